"""Every fault the demo generator can inject, delivered to a pipeline that already deployed a model.

The run halts naming the cause, or, for a duplicated or late partition, handles it with no double
counting; either way the deployed model is unchanged and nothing unaudited is published.

dbt costs seconds per invocation (and two runs at once are slower than one after another on two
cores), so work is shared: one clean baseline run deploys a champion over days 1-8 (5,000 rows a
day, enough to judge a day's fraud rate). The landing-file faults are delivered together as days
9-12 of one copy of that state; the data faults as days 10-13 of another, with day 9 late; the
faults that change what values mean (hours, id formats, codes, categories) as days 9-13 of a
third. Each
test checks that its own fault is named, on its own day, among the failing checks. Then the late
day arrives and the bad days are re-delivered corrected, and that run must pass and count every
row once. The duplicated partition runs from scratch, to compare its model with the baseline's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from orchestration.demo_data import DemoDataOptions, Fault, fault_path, generate, late_path
from tests.conftest import run_orchestrator, write_config

pytestmark = pytest.mark.slow

ROWS, DAYS, BASELINE_DAYS = 65_000, 13, 8
LATE_DAY = dt.date(2026, 1, 9)
STG = "staging.stg_bank__transactions"
# Faults delivered together, one per day after the baseline's days.
SCENARIOS = {
    "landing": {"dropped-column": dt.date(2026, 1, 9), "renamed-column": dt.date(2026, 1, 10),
                "type-change": dt.date(2026, 1, 11), "corrupt-file": dt.date(2026, 1, 12)},
    # Day 9 is late. The empty day comes last: an empty newest partition is what freshness catches.
    "data": {"null-explosion": dt.date(2026, 1, 10), "label-collapse": dt.date(2026, 1, 11),
             "unit-change": dt.date(2026, 1, 12), "empty-day": dt.date(2026, 1, 13)},
    # Row faults at ingest: ids of published day 1, and rows stamped as published day 1.
    "rows": {"reused-ids": dt.date(2026, 1, 9), "blank-ids": dt.date(2026, 1, 10),
             "conflicting-resend": dt.date(2026, 1, 11), "earlier-day-rows": dt.date(2026, 1, 12),
             "non-finite-amount": dt.date(2026, 1, 13)},
    # A small day (a fifth of the rows), every one positive: judged by the exact binomial bound.
    # Then user ids with a trailing space: every user new, like user-id-format's (so not beside it).
    "small": {"label-flood": dt.date(2026, 1, 9), "user-id-trailing-space": dt.date(2026, 1, 10)},
    "files": {"float32-amount": dt.date(2026, 1, 9), "directory-partition": dt.date(2026, 1, 10),
              "misnamed-file": dt.date(2026, 1, 11), "upper-case-suffix": dt.date(2026, 1, 12),
              "corrupt-page": dt.date(2026, 1, 13)},
    # Values whose meaning changed, each named by its own check on its own day.
    "values": {"shifted-local-time": dt.date(2026, 1, 9), "user-id-format": dt.date(2026, 1, 10),
               "alpha3-country": dt.date(2026, 1, 11), "unseen-currency": dt.date(2026, 1, 12),
               "swapped-categories": dt.date(2026, 1, 13)},
}
# Scenarios run with the process in a non-UTC zone: the warehouse must not care.
NON_UTC = {"rows": "America/New_York", "zoned": "America/New_York", "values": "America/New_York"}
# fault -> (failing stage, what stderr must name)
HALTS = {
    "dropped-column": ("ingest", "2026-01-09.parquet: column 'country_code' is missing (expected string)"),
    "renamed-column": ("ingest", "2026-01-10.parquet: column 'merchant_category' (string) is missing and "
                                 "'merchant_cat' (string) is unexpected: it looks renamed"),
    "type-change": ("ingest", "2026-01-11.parquet: column 'amount' has type string, expected double"),
    "corrupt-file": ("ingest", "2026-01-12.parquet: not a readable Parquet file"),
    "null-explosion": ("validate", f"null_fraction_vs_baseline on {STG}.merchant_category: null_fraction on "
                                   "2026-01-10 is 0.4"),
    "label-collapse": ("validate", f"label_rate_within_bounds on {STG}.is_fraud: label_rate on 2026-01-11 is 0,"),
    "unit-change": ("validate", f"mean_vs_baseline on {STG}.amount: mean on 2026-01-12 is"),
    "empty-day": ("validate", "source_freshness on source bank.transactions.txn_ts: age_hours is 24."),
    "reused-ids": ("ingest", "belong to different events (other txn_ts) in partitions 2026-01-01.parquet, "
                             "2026-01-09.parquet"),
    "blank-ids": ("ingest", "row(s) have a null, empty or blank 'txn_id'"),
    "conflicting-resend": ("ingest", "differ from another copy in is_fraud (partitions 2026-01-11.parquet)"),
    "earlier-day-rows": ("ingest", "have 'txn_ts' outside the partition's day (2026-01-11 18:00:00 to "
                                   "2026-01-13 06:00:00 UTC, tolerance 6h): 2026-01-01"),
    "non-finite-amount": ("ingest", "value(s) of 'amount' are not finite ("),
    "float32-amount": ("ingest", "2026-01-09.parquet: column 'amount' has type float, expected double"),
    "directory-partition": ("ingest", "2026-01-10.parquet: is a directory, not a Parquet file"),
    "label-flood": ("validate", f"label_rate_within_bounds on {STG}.is_fraud: label_rate on 2026-01-09 is 1, expected"),
    "corrupt-page": ("ingest", "2026-01-13.parquet: column 'amount', row group 0: a page cannot be read (could not "
                               "verify page integrity, CRC checksum verification failed"),
    "shifted-local-time": ("validate", f"hour_profile_vs_baseline on {STG}.event_at: hour_profile_distance on "
                                       "2026-01-09 is 0.3"),
    "user-id-format": ("validate", f"format_profile_vs_baseline on {STG}.user_id: unseen_format_share on 2026-01-10 "
                                   "is 1, expected 0 (allowed 0 to 0.01)"),
    "user-id-trailing-space": ("validate", f"new_entity_share on {STG}.user_id: new_entity_share on 2026-01-10 is 1, "
                                           "expected"),
    "alpha3-country": ("validate", f"format_profile_vs_baseline on {STG}.country: unseen_format_share on 2026-01-11 "
                                   "is 1, expected 0"),
    "unseen-currency": ("validate", f"unseen_category_share on {STG}.currency: unseen_share on 2026-01-12 is 1, "
                                    "expected 0 (allowed 0 to 0.2)"),
    "swapped-categories": ("validate", f"category_shares_vs_baseline on {STG}.merchant_category: category_share["),
}
# fault -> the check that must fail because of it, and on which segment (day)
CAUGHT_BY = {
    "dropped-column": ("landing_schema on transactions/2026-01-09.parquet.country_code", None),
    "renamed-column": ("landing_schema on transactions/2026-01-10.parquet.merchant_category", None),
    "type-change": ("landing_schema on transactions/2026-01-11.parquet.amount", None),
    "corrupt-file": ("landing_readable on transactions/2026-01-12.parquet", None),
    "null-explosion": (f"null_fraction_vs_baseline on {STG}.merchant_category", "2026-01-10"),
    "label-collapse": (f"label_rate_within_bounds on {STG}.is_fraud", "2026-01-11"),
    "unit-change": (f"mean_vs_baseline on {STG}.amount", "2026-01-12"),
    "empty-day": ("source_freshness on source bank.transactions.txn_ts", None),
    "reused-ids": ("event_key_reused on transactions/2026-01-09.parquet.txn_id", None),
    "blank-ids": ("event_key_not_blank on transactions/2026-01-10.parquet.txn_id", None),
    "conflicting-resend": ("event_key_conflict on transactions/2026-01-11.parquet.txn_id", None),
    "earlier-day-rows": ("partition_owns_day on transactions/2026-01-12.parquet.txn_ts", None),
    "non-finite-amount": ("finite_values on transactions/2026-01-13.parquet.amount", None),
    "float32-amount": ("landing_schema on transactions/2026-01-09.parquet.amount", None),
    "directory-partition": ("landing_file_name on transactions/2026-01-10.parquet", None),
    "label-flood": (f"label_rate_within_bounds on {STG}.is_fraud", "2026-01-09"),
    "corrupt-page": ("landing_integrity on transactions/2026-01-13.parquet.amount", None),
    "shifted-local-time": (f"hour_profile_vs_baseline on {STG}.event_at", "2026-01-09"),
    "user-id-format": (f"format_profile_vs_baseline on {STG}.user_id", "2026-01-10"),
    "user-id-trailing-space": (f"new_entity_share on {STG}.user_id", "2026-01-10"),
    "alpha3-country": (f"format_profile_vs_baseline on {STG}.country", "2026-01-11"),
    "unseen-currency": (f"unseen_category_share on {STG}.currency", "2026-01-12"),
    "swapped-categories": (f"category_shares_vs_baseline on {STG}.merchant_category", "2026-01-13"),
}


@dataclass(frozen=True)
class Run:
    """One orchestrator run, and the state it left (later runs on the same root change the files)."""

    root: Path
    result: subprocess.CompletedProcess[str]
    champion: str
    """The champion pointer's text right after the run."""
    publications: int
    """Rows in validation.publications right after the run."""

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    @property
    def run_id(self) -> str:
        return self.result.stdout.split(":", 1)[0].removeprefix("run ")

    def query(self, sql: str) -> list[tuple]:
        """``sql`` on the warehouse; ``{run}`` is this run's id (rows of later runs are there too)."""
        with duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql.replace("{run}", f"'{self.run_id}'")).fetchall()


def _files(folder: Path) -> list[Path]:
    return sorted((folder / "transactions").glob("*.parquet"))


def _world(root: Path, landing: list[Path]) -> Path:
    """A pipeline root whose landing folder holds copies of ``landing``; paths in its config are relative."""
    (root / "landing" / "transactions").mkdir(parents=True)
    for path in landing:
        shutil.copy(path, root / "landing" / "transactions" / path.name)
    # Any newly labelled row fires the retrain policy, so corrected data is trained on at once.
    write_config(root, paths={"warehouse": "warehouse.duckdb", "landing": "landing", "artifacts": "artifacts"},
                 demo_data={"generate_if_empty": False}, monitoring={"min_new_labelled_rows": 1})
    return root


def _run(root: Path, tz: str | None = None) -> Run:
    result = run_orchestrator("--config", str(root / "pipeline.yml"), env={"TZ": tz} if tz else None, timeout=900)
    pointer = root / "artifacts" / "registry" / "champion.json"
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        (published,) = con.execute("select count(*) from information_schema.tables "
                                   "where table_schema = 'validation' and table_name = 'publications'").fetchone()
        if published:
            (published,) = con.execute("select count(*) from validation.publications").fetchone()
    return Run(root, result, pointer.read_text() if pointer.exists() else "", published)


def _deliver(path: Path, folder: Path) -> None:
    """Put a fault's partition (a file, or the directory named like a partition) into ``folder``."""
    if path.parent.name.endswith(".parquet"):
        shutil.copytree(path.parent, folder / path.parent.name)
    else:
        shutil.copy(path, folder / path.name)


def _generate(folder: Path, fault: Fault | None = None) -> Path:
    generate(folder, DemoDataOptions(rows=ROWS, days=DAYS, seed=7, fault=fault))
    return folder


@dataclass(frozen=True)
class Faults:
    clean: Path
    baseline: Run
    runs: dict[str, list[Run]]
    """Scenario (those of ``SCENARIOS``, zoned, duplicate) -> its runs in order."""

    def run_with(self, kind: str) -> Run:
        """The (first) run that got fault ``kind``."""
        (scenario,) = [name for name, faults in SCENARIOS.items() if kind in faults]
        return self.runs[scenario][0]


@pytest.fixture(scope="session")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Faults:
    top = tmp_path_factory.mktemp("faults")
    clean = _generate(top / "clean")
    baseline = _run(_world(top / "baseline", _files(clean)[:BASELINE_DAYS]))
    assert baseline.result.returncode == 0, baseline.output[-3000:]
    runs: dict[str, list[Run]] = {}
    for scenario, faults in SCENARIOS.items():
        root = top / scenario
        shutil.copytree(baseline.root, root)
        for kind, day in faults.items():
            _deliver(fault_path(_generate(top / kind, Fault(kind, day)), day, kind), root / "landing" / "transactions")
        runs[scenario] = [_run(root, NON_UTC.get(scenario))]
    # A correct file whose timestamps carry a zone, ingested by a process in New York: stored as UTC.
    zoned = top / "zoned"
    shutil.copytree(baseline.root, zoned)
    shutil.copy(_generate(top / "zoned-timestamps", Fault("zoned-timestamps", LATE_DAY)) / "transactions" /
                f"{LATE_DAY}.parquet", zoned / "landing" / "transactions")
    runs["zoned"] = [_run(zoned, NON_UTC["zoned"])]
    # Then the late day arrives, and the bad days are re-delivered corrected.
    data = top / "data"
    shutil.copy(late_path(_generate(top / "late-partition", Fault("late-partition", LATE_DAY)), LATE_DAY),
                data / "landing" / "transactions")
    for day in SCENARIOS["data"].values():
        shutil.copy(clean / "transactions" / f"{day}.parquet", data / "landing" / "transactions")
    runs["data"].append(_run(data))
    # Duplicate, from scratch: day 7 is re-sent inside day 8; the model must equal the baseline's.
    duplicated = _generate(top / "duplicate-partition", Fault("duplicate-partition", dt.date(2026, 1, 7)))
    runs["duplicate"] = [_run(_world(top / "duplicate", _files(duplicated)[:BASELINE_DAYS]))]
    return Faults(clean, baseline, runs)


def _assert_nothing_changed(run: Run, baseline: Run) -> None:
    assert run.champion == baseline.champion, "the deployed model changed"
    assert run.publications == 1, "something new was published"


def test_a_clean_run_passes_every_check(faults: Faults) -> None:
    baseline = faults.baseline
    assert baseline.query("select count(*) from validation.check_results where passed is not true") == [(0,)]
    assert baseline.query("select count(*) from validation.alerts") == [(0,)]
    checks = {name for (name,) in baseline.query("select distinct check_name from validation.check_results")}
    assert {"landing_schema", "partition_sequence", "contract", "source_freshness", "null_fraction_vs_baseline",
            "mean_vs_baseline", "std_vs_baseline", "row_count_vs_trailing", "label_rate_within_bounds",
            "accepted_category_set", "unseen_category_share", "accepted_range", "hour_profile_vs_baseline",
            "format_profile_vs_baseline", "new_entity_share", "category_shares_vs_baseline"} <= checks


@pytest.mark.parametrize("kind", HALTS)
def test_fault_halts_the_run_naming_the_cause(faults: Faults, kind: str) -> None:
    run = faults.run_with(kind)
    stage, cause = HALTS[kind]
    assert run.result.returncode == 1, run.output[-3000:]
    assert f"stage '{stage}' failed" in run.result.stderr and cause in run.result.stderr, run.result.stderr
    assert "Traceback" not in run.output
    label, day = CAUGHT_BY[kind]
    ((alert_stage, checks),) = run.query("select stage, checks from validation.alerts where run_id = {run}")
    assert alert_stage == stage and label in checks, checks
    # The check failed at error severity because of this fault's day, and only that day.
    failed = run.query("select check_name || ' on ' || table_name || coalesce('.' || column_name, ''), segment, "
                       "count_failed_segments from validation.check_results where not passed and severity = 'error' "
                       "and run_id = {run}")
    assert (label, day, 1 if day else None) in failed, failed
    _assert_nothing_changed(run, faults.baseline)


def test_warn_checks_are_reported_and_recorded_without_naming_them_in_the_halt(faults: Faults) -> None:
    run = faults.run_with("unit-change")  # amount x100 also moves its spread, a warn-severity check
    assert f"WARN std_vs_baseline on {STG}.amount: std on 2026-01-12" in run.result.stdout
    assert run.query("select severity, passed from validation.check_results where check_name = 'std_vs_baseline' "
                     "and run_id = {run}") == [("warn", False)]
    ((checks,),) = run.query("select checks from validation.alerts where run_id = {run}")
    assert f"mean_vs_baseline on {STG}.amount" in checks and not [c for c in checks if c.startswith("std_")]


@pytest.mark.parametrize("kind", ["misnamed-file", "upper-case-suffix"])
def test_a_misnamed_data_file_is_a_named_warning_not_ignored(faults: Faults, kind: str) -> None:
    run = faults.run_with(kind)
    name = fault_path(Path("landing"), SCENARIOS["files"][kind], kind).name
    assert run.query("select severity, expected, actual from validation.check_results where check_name = "
                     f"'landing_file_name' and table_name = 'transactions/{name}' and run_id = {{run}}") == \
        [("warn", "YYYY-MM-DD.parquet", name)]
    _assert_nothing_changed(run, faults.baseline)


def test_zoned_timestamps_load_as_utc_under_a_non_utc_process_tz(faults: Faults) -> None:
    (run,) = faults.runs["zoned"]
    # Every data check passes and the served features equal the warehouse's (hours included); one
    # more day may still lose the no-regression gate to the champion, which is about the model.
    assert run.query("select count(*) from validation.check_results where not passed and run_id = {run}") == [(0,)]
    assert "parity passed on" in run.result.stdout and "stage 'ingest'" not in run.result.stderr, run.output[-3000:]
    clean = faults.clean / "transactions" / f"{LATE_DAY}.parquet"
    with duckdb.connect() as con:
        expected = con.execute("select min(txn_ts), max(txn_ts), count(*) from read_parquet(?)", [str(clean)]).fetchall()
    assert run.query("select min(txn_ts), max(txn_ts), count(*) from raw.transactions "
                     f"where filename = '{LATE_DAY}.parquet'") == expected


def test_an_empty_day_is_reported_at_ingest_and_halts_on_freshness(faults: Faults) -> None:
    run = faults.run_with("empty-day")
    assert "WARN partition_not_empty on transactions/2026-01-13.parquet" in run.result.stdout


def test_a_duplicated_partition_is_not_double_counted(faults: Faults) -> None:
    (run,) = faults.runs["duplicate"]
    assert run.result.returncode == 0, run.output[-3000:]
    (resent,) = run.query("select count(*) from raw.transactions where filename = '2026-01-08.parquet' "
                          "and cast(txn_ts as date) = date '2026-01-07'")
    assert resent[0] > 1000, "day 7 was not re-sent with day 8"
    # Once deduplicated it is exactly the clean baseline's data, and the same model, byte for byte.
    staged = f"select count(*), sum(hash(s)) from {STG} s"
    assert run.query(staged) == faults.baseline.query(staged)
    assert _model_sha(run) == _model_sha(faults.baseline)


def _model_sha(run: Run) -> str:
    bundle = run.root / "artifacts" / "registry" / "bundles" / json.loads(run.champion)["bundle_id"]
    return hashlib.sha256((bundle / "model.onnx").read_bytes()).hexdigest()


def test_a_late_partition_halts_until_it_arrives_then_every_row_counts_once(faults: Faults) -> None:
    first, second = faults.runs["data"]
    assert "WARN partition_sequence" in first.result.stdout and "no landing partition for 2026-01-09" in first.result.stdout
    # Day 9 is missing, and the empty newest day 13 too (the calendar runs to the newest partition).
    assert f"row_count_vs_trailing on {STG}: row_count on 2026-01-13 is 0, expected 49" in first.result.stderr
    assert "; 2 of 13 days failed" in first.result.stderr.split("row_count_vs_trailing", 1)[1].split("\n", 1)[0]
    _assert_nothing_changed(first, faults.baseline)
    # Day 9 arrives late, the four bad days come again corrected: never published, so they are replaced.
    assert second.result.returncode == 0, second.output[-3000:]
    for day in SCENARIOS["data"].values():
        assert f"replacing unpublished partition {day}.parquet" in second.result.stdout
    assert second.query("select count(*), count(distinct file_name), count(published_at) from raw.ingestion_log") == \
        [(DAYS, DAYS, DAYS)]
    landed = ", ".join(f"'{p}'" for p in _files(faults.clean))
    with duckdb.connect() as con:
        ((rows, distinct),) = con.execute(f"select count(*), count(distinct txn_id) from read_parquet([{landed}])").fetchall()
    assert second.query("select count(*) from raw.transactions") == [(rows,)]
    assert second.query(f"select count(*), count(distinct transaction_id) from {STG}") == [(distinct, distinct)]
    assert second.champion != faults.baseline.champion


def test_new_days_are_compared_with_the_baseline_the_deployed_model_learned_from(faults: Faults) -> None:
    first, second = faults.runs["data"]
    ((learned_from,),) = faults.baseline.query("select baseline_id from validation.publications")
    assert "checks compare with the training window of the deployed model" in first.result.stdout
    assert first.query("select actual from validation.check_results where check_name = 'baseline_available' "
                       "and run_id = {run}") == [(learned_from[:12],)]
    # The passing run trained on a longer window: a new version, stored beside the one it was checked against.
    ((latest,),) = second.query("select baseline_id from validation.publications where run_id = {run}")
    stored = {b for (b,) in second.query("select distinct baseline_id from validation.baseline_transaction_profile")}
    assert latest != learned_from and {latest, learned_from} <= stored
    ((expected,),) = second.query("select expected_value from validation.check_results "
                                  "where check_name = 'mean_vs_baseline' and run_id = {run}")
    assert second.query("select value from validation.baseline_transaction_profile where column_name = 'amount' "
                        f"and metric = 'mean' and baseline_id = '{learned_from}'") == [(pytest.approx(expected),)]
