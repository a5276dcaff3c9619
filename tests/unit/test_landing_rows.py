"""Row-level landing checks at ingest, on small demo worlds with one fault each."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from orchestration.demo_data import DemoDataOptions, Fault, fault_path, generate
from orchestration.errors import LandingError
from orchestration.ingest import ingest
from orchestration.landing_rows import LandingRules

COLUMNS = {"txn_id": "string", "txn_ts": "timestamp", "user_id": "string", "merchant_id": "string",
           "merchant_category": "string", "amount": "double", "currency_code": "string", "country_code": "string",
           "channel": "string", "device_type": "string", "is_fraud": "boolean"}
RULES = LandingRules(event_key="txn_id", event_time="txn_ts", time_zone="UTC", day_tolerance_hours=6)
DAY = dt.date(2026, 1, 3)


def _world(tmp_path: Path, kind: str | None) -> Path:
    landing = tmp_path / "landing"
    generate(landing, DemoDataOptions(rows=3_000, days=4, seed=3, fault=Fault(kind, DAY) if kind else None))
    return landing


def _ingest(landing: Path, warehouse: Path, rules: LandingRules = RULES):
    return ingest(landing, "transactions", COLUMNS, warehouse, "r1", rules=rules)


def _failed(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select check_name, table_name, column_name, expected, actual, message "
                           "from validation.check_results where passed = false order by 1").fetchall()


def test_clean_data_and_exact_resends_pass(tmp_path: Path) -> None:
    landing = _world(tmp_path, "duplicate-partition")  # day 3 re-sent inside day 4: exact copies
    result = _ingest(landing, tmp_path / "w.duckdb")
    assert len(result.loaded) == 4 and not [c for c in result.checks if c.passed is False and c.severity == "error"]


@pytest.mark.parametrize(("kind", "check", "column", "says"), [
    ("reused-ids", "event_key_reused", "txn_id", "in partitions 2026-01-01.parquet, 2026-01-03.parquet"),
    ("blank-ids", "event_key_not_blank", "txn_id", "null, empty or blank 'txn_id'"),
    ("conflicting-resend", "event_key_conflict", "txn_id", "differ from another copy in is_fraud (partitions"),
    ("earlier-day-rows", "partition_owns_day", "txn_ts", "outside the partition's day (2026-01-02 18:00:00 to"),
    ("non-finite-amount", "finite_values", "amount", "are not finite ("),
    ("float32-amount", "landing_schema", "amount", "has type float, expected double"),
])
def test_a_row_fault_halts_naming_file_column_check_expected_actual(tmp_path: Path, kind: str, check: str,
                                                                     column: str, says: str) -> None:
    landing, warehouse = _world(tmp_path, kind), tmp_path / "w.duckdb"
    with pytest.raises(LandingError, match="nothing was loaded") as err:
        _ingest(landing, warehouse)
    assert says in str(err.value) and f"{DAY}.parquet" in str(err.value)
    ((name, table, col, expected, actual, _),) = [r for r in _failed(warehouse) if r[0] == check]
    assert (table, col) == (f"transactions/{DAY}.parquet", column) and expected and actual
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.ingestion_log").fetchone() == (0,)


def test_the_day_tolerance_is_configurable(tmp_path: Path) -> None:
    landing = _world(tmp_path, "earlier-day-rows")
    result = _ingest(landing, tmp_path / "w.duckdb", LandingRules("txn_id", "txn_ts", "UTC", day_tolerance_hours=12 * 24))
    assert len(result.loaded) == 4


def test_a_reused_id_across_runs_is_caught_against_the_loaded_rows(tmp_path: Path) -> None:
    landing, warehouse = _world(tmp_path, "reused-ids"), tmp_path / "w.duckdb"
    held = tmp_path / "held.parquet"
    fault_path(landing, DAY, None).rename(held)
    _ingest(landing, warehouse)
    held.rename(fault_path(landing, DAY, None))
    with pytest.raises(LandingError, match="event_key_reused|belong to different events"):
        _ingest(landing, warehouse)


@pytest.mark.parametrize("kind", ["misnamed-file", "upper-case-suffix"])
def test_a_misnamed_data_file_is_a_named_warning(tmp_path: Path, kind: str) -> None:
    landing = _world(tmp_path, kind)
    result = _ingest(landing, tmp_path / "w.duckdb")
    (warn,) = [c for c in result.checks if c.warns and c.check == "landing_file_name"]
    assert warn.check == "landing_file_name" and fault_path(landing, DAY, kind).name in warn.message


def test_a_directory_named_like_a_partition_is_an_error(tmp_path: Path) -> None:
    landing = _world(tmp_path, "directory-partition")
    with pytest.raises(LandingError, match=f"{DAY}.parquet: is a directory, not a Parquet file"):
        _ingest(landing, tmp_path / "w.duckdb")


def test_naive_timestamps_are_refused_unless_the_source_declares_a_zone(tmp_path: Path) -> None:
    landing = _world(tmp_path, None)
    with pytest.raises(LandingError, match="'txn_ts' is a timestamp without a time zone"):
        _ingest(landing, tmp_path / "w.duckdb", LandingRules("txn_id", "txn_ts", time_zone=None))


SCRIPT = """
import sys, duckdb
from pathlib import Path
from tests.unit.test_landing_rows import _ingest
_ingest(Path(sys.argv[1]), Path(sys.argv[2]))
with duckdb.connect(sys.argv[2]) as con:
    print(con.execute("select min(txn_ts), max(txn_ts), count(*) from raw.transactions").fetchone())
"""


def test_zoned_timestamps_are_stored_in_utc_whatever_the_process_tz(tmp_path: Path) -> None:
    """A file with zoned timestamps loads the same instants as the naive-UTC file, under TZ=America/New_York."""
    out = []
    for kind in (None, "zoned-timestamps"):
        landing = _world(tmp_path / str(kind), kind)
        env = {**os.environ, "TZ": "America/New_York"}
        run = subprocess.run([sys.executable, "-c", SCRIPT, str(landing), str(tmp_path / f"{kind}.duckdb")],
                             capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], check=True)
        out.append(run.stdout)
    assert out[0] == out[1] and "2026, 1, 1, 0" in out[0], out


@pytest.mark.parametrize(("meta", "says"), [
    ({"landing": {"event_kee": "txn_id"}}, "unknown keys \\['event_kee'\\]"),
    ({"landing": {"event_key": "id"}}, "meta.landing.event_key is 'id', not a declared column"),
    ({"landing": {"event_time": "amount"}}, "is double, not a timestamp"),
    ({"landing": {"day_tolerance_hours": -1}}, "day_tolerance_hours must be >= 0"),
])
def test_a_bad_landing_declaration_says_how_to_fix_it(meta: dict, says: str) -> None:
    with pytest.raises(LandingError, match=says):
        LandingRules.from_meta(meta, COLUMNS)


def test_no_declaration_means_no_row_rules_and_naive_timestamps_refused() -> None:
    assert LandingRules.from_meta({}, COLUMNS) == LandingRules()
