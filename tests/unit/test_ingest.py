from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.errors import LandingError
from orchestration.ingest import ingest, inspect_partition, mark_published

EXPECTED = {"id": "string", "amount": "double", "at": "timestamp"}


def _write(path: Path, **columns: pa.Array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def _good(path: Path, amount: float = 1.0, rows: int = 1) -> Path:
    return _write(path, id=pa.array([f"{path.stem}-{i}" for i in range(rows)], pa.string()),
                  amount=pa.array([amount] * rows, pa.float64()), at=pa.array([0] * rows, pa.timestamp("us")))


def _query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"id": pa.array(["a"]), "at": pa.array([0], pa.timestamp("us"))}, "column 'amount' is missing \\(expected double\\)"),
        ({"id": pa.array(["a"]), "amount": pa.array(["1.0"]), "at": pa.array([0], pa.timestamp("us"))},
         "column 'amount' has type string, expected double"),
        ({"id": pa.array(["a"]), "amount": pa.array([1.0]), "at": pa.array([0], pa.timestamp("us")), "x": pa.array([1])},
         "unexpected column 'x' \\(integer\\)"),
        ({"id": pa.array(["a"]), "amt": pa.array([1.0]), "at": pa.array([0], pa.timestamp("us"))},
         "column 'amount' \\(double\\) is missing and 'amt' \\(double\\) is unexpected: it looks renamed to 'amt'"),
    ],
    ids=["missing", "retyped", "extra", "renamed"],
)
def test_schema_drift_names_file_column_expected_and_actual(tmp_path: Path, columns: dict, message: str) -> None:
    path = _write(tmp_path / "t" / "2026-01-01.parquet", **columns)
    with pytest.raises(LandingError, match=message) as info:
        inspect_partition(path, EXPECTED)
    assert "2026-01-01.parquet" in str(info.value)


def test_corrupt_and_misnamed_files_are_named(tmp_path: Path) -> None:
    corrupt = tmp_path / "t" / "2026-01-02.parquet"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LandingError, match="2026-01-02.parquet: not a readable Parquet file"):
        inspect_partition(corrupt, EXPECTED)
    with pytest.raises(LandingError, match="must be named YYYY-MM-DD.parquet"):
        inspect_partition(_good(tmp_path / "t" / "jan.parquet"), EXPECTED)


def test_every_bad_file_is_named_recorded_and_nothing_is_loaded(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    _good(landing / "t" / "2026-01-01.parquet")
    _write(landing / "t" / "2026-01-02.parquet", id=pa.array(["a"]), at=pa.array([0], pa.timestamp("us")))
    (landing / "t" / "2026-01-03.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(LandingError, match="2 landing check") as info:
        ingest(landing, "t", EXPECTED, warehouse, "run1")
    assert "2026-01-02.parquet: column 'amount' is missing" in str(info.value)
    assert "2026-01-03.parquet: not a readable Parquet file" in str(info.value)
    assert set(info.value.checks) == {"landing_schema on t/2026-01-02.parquet.amount", "landing_readable on t/2026-01-03.parquet"}
    recorded = _query(warehouse, "select table_name, check_name, column_name, expected, actual, passed "
                                 "from validation.check_results where not passed order by table_name")
    assert recorded == [("t/2026-01-02.parquet", "landing_schema", "amount", "double", "missing", False),
                        ("t/2026-01-03.parquet", "landing_readable", None, "readable Parquet", "unreadable", False)]
    assert _query(warehouse, "select count(*) from raw.ingestion_log") == [(0,)]


def test_partitions_load_exactly_once_and_redelivery_duplicates_nothing(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    _good(landing / "t" / "2026-01-01.parquet", rows=3)
    assert [p.path.name for p in ingest(landing, "t", EXPECTED, warehouse, "run1").loaded] == ["2026-01-01.parquet"]
    _good(landing / "t" / "2026-01-03.parquet", rows=2)
    result = ingest(landing, "t", EXPECTED, warehouse, "run2")
    assert [p.path.name for p in result.loaded] == ["2026-01-03.parquet"]
    gap = [c for c in result.checks if c.check == "partition_sequence"][0]
    assert gap.warns and "no landing partition for 2026-01-02" in gap.message
    # The same bytes delivered again (a retry, a re-sync): nothing new, nothing doubled.
    _good(landing / "t" / "2026-01-01.parquet", rows=3)
    assert ingest(landing, "t", EXPECTED, warehouse, "run3").loaded == ()
    # A partition arriving late, after a later day: loaded like any new one.
    _good(landing / "t" / "2026-01-02.parquet", rows=4)
    late = ingest(landing, "t", EXPECTED, warehouse, "run4")
    assert [p.path.name for p in late.loaded] == ["2026-01-02.parquet"]
    assert [c.passed for c in late.checks if c.check == "partition_sequence"] == [True]
    assert _query(warehouse, "select filename, count(*) from raw.t group by 1 order by 1") == [
        ("2026-01-01.parquet", 3), ("2026-01-02.parquet", 4), ("2026-01-03.parquet", 2)]
    assert _query(warehouse, "select file_name, count_rows, run_id from raw.ingestion_log order by 1") == [
        ("2026-01-01.parquet", 3, "run1"), ("2026-01-02.parquet", 4, "run4"), ("2026-01-03.parquet", 2, "run2")]


def test_changed_redelivery_replaces_an_unpublished_partition_but_not_a_published_one(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    _good(landing / "t" / "2026-01-01.parquet", amount=1.0, rows=2)
    ingest(landing, "t", EXPECTED, warehouse, "run1")
    # Not yet published (the run that loaded it halted): the corrected file replaces it.
    _good(landing / "t" / "2026-01-01.parquet", amount=2.0, rows=2)
    result = ingest(landing, "t", EXPECTED, warehouse, "run2")
    assert result.replaced == ("2026-01-01.parquet",)
    assert _query(warehouse, "select amount, count(*) from raw.t group by 1") == [(2.0, 2)]
    with duckdb.connect(str(warehouse)) as con:
        assert mark_published(con, __import__("datetime").datetime(2026, 1, 2)) == 1
    _good(landing / "t" / "2026-01-01.parquet", amount=3.0, rows=2)
    with pytest.raises(LandingError, match="2026-01-01.parquet: partition was already ingested with sha256 .* and published"):
        ingest(landing, "t", EXPECTED, warehouse, "run3")
    assert _query(warehouse, "select amount, count(*) from raw.t group by 1") == [(2.0, 2)]


def test_an_empty_partition_is_loaded_with_a_warning(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    _good(landing / "t" / "2026-01-01.parquet", rows=0)
    result = ingest(landing, "t", EXPECTED, warehouse, "run1")
    (empty,) = [c for c in result.checks if c.check == "partition_not_empty"]
    assert empty.warns and "0 rows" in empty.message


def test_empty_landing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match="no landing partitions.*generate_if_empty"):
        ingest(tmp_path, "t", EXPECTED, tmp_path / "w.duckdb", "run")


def _overwrite_in_page(path: Path, column: str, value: bytes) -> None:
    """Overwrite bytes in the middle of ``column``'s first column chunk; the footer stays as written."""
    chunk = pq.read_metadata(path).row_group(0).column(pq.read_schema(path).get_field_index(column))
    with open(path, "r+b") as fh:
        fh.seek(chunk.data_page_offset + chunk.total_compressed_size - len(value))
        fh.write(value)


@pytest.mark.parametrize("checksums", [True, False], ids=["page-checksum", "row-group-statistics"])
def test_corrupted_bytes_inside_a_page_are_found_and_the_column_named(tmp_path: Path, checksums: bool) -> None:
    path = tmp_path / "t" / "2026-01-01.parquet"
    path.parent.mkdir(parents=True)
    table = pa.table({"id": pa.array(["a", "b", "c"]), "amount": pa.array([1.0, 2.0, 3.0]),
                      "at": pa.array([0, 1, 2], pa.timestamp("us"))})
    # Uncompressed and plain, so the changed bytes still decode: only a checksum or the statistics tell.
    pq.write_table(table, path, compression="none", use_dictionary=False, write_page_checksum=checksums)
    _overwrite_in_page(path, "amount", pa.array([1.7e-306]).buffers()[1].to_pybytes())
    assert pq.read_metadata(path).num_rows == 3  # the footer is intact
    with pytest.raises(LandingError) as info:
        inspect_partition(path, EXPECTED)
    assert info.value.checks == ("landing_integrity on t/2026-01-01.parquet.amount",)
    expected = "CRC checksum verification failed" if checksums else "values 1.7e-306 to 2.0 where the footer says 1.0 to 3.0"
    assert "2026-01-01.parquet: column 'amount', row group 0:" in str(info.value) and expected in str(info.value)


def test_the_logged_checksum_is_of_the_bytes_that_were_loaded(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    path = _good(landing / "t" / "2026-01-01.parquet", amount=5.0, rows=2)
    ingest(landing, "t", EXPECTED, warehouse, "run1")
    import hashlib  # noqa: PLC0415

    assert _query(warehouse, "select sha256 from raw.ingestion_log") == [(hashlib.sha256(path.read_bytes()).hexdigest(),)]
    assert _query(warehouse, "select id, amount from raw.t order by id") == [("2026-01-01-0", 5.0), ("2026-01-01-1", 5.0)]
