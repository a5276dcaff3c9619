"""Landing layouts beyond daily Parquet: daily CSV files and hive-style day folders, ingested as
they land, each file known by its partition name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.errors import LandingError
from orchestration.ingest import check_partition, ingest

EXPECTED = {"id": "string", "amount": "double", "at": "timestamp"}


def test_a_csv_value_that_does_not_cast_is_a_landing_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t" / "2026-05-01.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,amount,at\na,1.5,2026-05-01 10:00:00\nb,lots,2026-05-01 11:00:00\n")
    partition, checks = check_partition(path, EXPECTED)
    assert partition is None
    assert checks[0].check == "landing_readable" and "2026-05-01.csv: not a readable CSV file" in checks[0].message


def test_a_csv_missing_a_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t" / "2026-05-01.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,at\na,2026-05-01 10:00:00\n")
    partition, checks = check_partition(path, EXPECTED)
    assert partition is None and [c.column for c in checks] == ["amount"] and "is missing" in checks[0].message


def test_hive_folders_load_each_file_once_under_its_partition_name(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    for day in ("2026-05-01", "2026-05-02"):
        for part in range(2):
            folder = landing / "t" / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            at = dt.datetime.fromisoformat(f"{day}T10:00:00")
            pq.write_table(pa.table({"id": [f"{day}-{part}"], "amount": [1.0 + part],
                                     "at": pa.array([at], pa.timestamp("us"))}), folder / f"part-{part}.parquet")
    warehouse = tmp_path / "w.duckdb"
    result = ingest(landing, "t", EXPECTED, warehouse, "run1")
    assert [p.day for p in result.loaded] == [dt.date(2026, 5, 1)] * 2 + [dt.date(2026, 5, 2)] * 2
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select filename, count(*) from raw.t group by 1 order by 1").fetchall() == [
            ("date=2026-05-01/part-0.parquet", 1), ("date=2026-05-01/part-1.parquet", 1),
            ("date=2026-05-02/part-0.parquet", 1), ("date=2026-05-02/part-1.parquet", 1)]
    assert ingest(landing, "t", EXPECTED, warehouse, "run2").loaded == ()  # nothing new: nothing reloaded


def test_a_file_outside_the_layouts_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t" / "may.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,amount,at\n")
    with pytest.raises(LandingError, match="YYYY-MM-DD.parquet or YYYY-MM-DD.csv"):
        ingest(tmp_path, "t", EXPECTED, tmp_path / "w.duckdb", "run1")
