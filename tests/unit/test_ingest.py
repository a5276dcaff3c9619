from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.errors import LandingError
from orchestration.ingest import ingest, inspect_partition

EXPECTED = {"id": "string", "amount": "double", "at": "timestamp"}


def _write(path: Path, **columns: pa.Array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def _good(path: Path, amount: float = 1.0) -> Path:
    return _write(path, id=pa.array(["a"]), amount=pa.array([amount]),
                  at=pa.array([0], pa.timestamp("us")))


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"id": pa.array(["a"]), "at": pa.array([0], pa.timestamp("us"))}, "column 'amount' is missing \\(expected double\\)"),
        ({"id": pa.array(["a"]), "amount": pa.array(["1.0"]), "at": pa.array([0], pa.timestamp("us"))},
         "column 'amount' has type string, expected double"),
        ({"id": pa.array(["a"]), "amount": pa.array([1.0]), "at": pa.array([0], pa.timestamp("us")), "x": pa.array([1])},
         "unexpected column 'x' \\(integer\\)"),
    ],
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


def test_partitions_are_logged_once_and_changes_are_caught(tmp_path: Path) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    _good(landing / "t" / "2026-01-01.parquet")
    _, new = ingest(landing, "t", EXPECTED, warehouse, "run1")
    assert [p.path.name for p in new] == ["2026-01-01.parquet"]
    _good(landing / "t" / "2026-01-02.parquet")
    _, new = ingest(landing, "t", EXPECTED, warehouse, "run2")
    assert [p.path.name for p in new] == ["2026-01-02.parquet"]
    _good(landing / "t" / "2026-01-01.parquet", amount=2.0)
    with pytest.raises(LandingError, match="2026-01-01.parquet: partition was already ingested with sha256"):
        ingest(landing, "t", EXPECTED, warehouse, "run3")


def test_empty_landing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match="no landing partitions.*generate_if_empty"):
        ingest(tmp_path, "t", EXPECTED, tmp_path / "w.duckdb", "run")
