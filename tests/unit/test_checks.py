"""Check results from dbt's artifacts, recorded and read back with SQL."""

from pathlib import Path

import duckdb
import pytest

from orchestration.checks import (
    CheckResult, dbt_results, freshness_results, insert_checks, record_alert, summary,
)


def _manifest() -> dict:
    model = {"resource_type": "model", "name": "stg_x", "schema": "staging_audit", "alias": "stg_x",
             "config": {"contract": {"enforced": True}}}
    metric_test = {"resource_type": "test", "name": "null_fraction_vs_baseline_stg_x_c", "column_name": "c",
                   "attached_node": "model.p.stg_x", "config": {"severity": "ERROR", "store_failures": True},
                   "test_metadata": {"name": "null_fraction_vs_baseline", "kwargs": {"max_abs_diff": 0.05, "model": "m"}}}
    row_test = {"resource_type": "test", "name": "accepted_range_stg_x_c", "column_name": "c",
                "attached_node": "model.p.stg_x", "config": {"severity": "warn"},
                "test_metadata": {"name": "accepted_range", "kwargs": {"min_value": 0, "column_name": "c"}}}
    return {"nodes": {"model.p.stg_x": model, "test.p.metric": metric_test, "test.p.rows": row_test,
                      "test.p.skipped": {**row_test, "name": "skipped"}},
            "sources": {"source.p.bank.t": {"source_name": "bank", "name": "t", "loaded_at_field": "ts"}}}


def test_dbt_results_keep_the_worst_day_and_name_the_published_table(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema m; create table m.t as select * from (values "
                    "('2026-01-01', 'null_fraction', 0.01, 0.02, 0.05, -0.04, 0.06, true),"
                    "('2026-01-02', 'null_fraction', 0.01, 0.41, 0.05, -0.04, 0.06, false),"
                    "('2026-01-03', 'null_fraction', 0.01, 0.09, 0.05, -0.04, 0.06, false)"
                    ") v(segment, metric, expected, actual, threshold, lower_bound, upper_bound, passed)")
    run_results = {"results": [
        {"unique_id": "model.p.stg_x", "status": "success"},
        {"unique_id": "test.p.metric", "status": "fail", "failures": 2, "relation_name": "m.t"},
        {"unique_id": "test.p.rows", "status": "warn", "failures": 3},
        {"unique_id": "test.p.skipped", "status": "skipped", "message": "upstream failed"},
    ]}
    model, metric, rows, skipped = dbt_results(run_results, _manifest(), warehouse, "_audit")
    assert (model.check, model.table, model.passed) == ("contract", "staging.stg_x", True)
    assert (metric.check, metric.table, metric.column, metric.segment) == ("null_fraction_vs_baseline", "staging.stg_x", "c", "2026-01-02")
    assert (metric.expected, metric.actual, metric.threshold, metric.count_failed_segments) == ("0.01", "0.41", "0.05", 2)
    assert metric.halts and "null_fraction on 2026-01-02 is 0.41, expected 0.01" in metric.describe()
    assert (rows.metric, rows.actual, rows.threshold, rows.warns) == ("failing_rows", "3", "min_value=0", True)
    assert skipped.passed is None and not skipped.halts
    assert summary([model, metric, rows, skipped]) == {"checks": 4, "passed": 1, "warnings": 1, "errors": 1, "not_run": 1}


@pytest.mark.parametrize(("status", "severity", "passed"), [("pass", "error", True), ("warn", "warn", False), ("error", "error", False)])
def test_freshness_results(status: str, severity: str, passed: bool) -> None:
    sources = {"results": [{
        "unique_id": "source.p.bank.t", "status": status, "max_loaded_at": "2026-01-08T23:50:00+00:00",
        "snapshotted_at": "2026-01-10T00:00:00+00:00", "max_loaded_at_time_ago_in_s": 87000.0,
        "criteria": {"warn_after": {"count": 6, "period": "hour"}, "error_after": {"count": 1, "period": "day"}}}]}
    (result,) = freshness_results(sources, _manifest())
    assert (result.table, result.column, result.severity, result.passed) == ("source bank.t", "ts", severity, passed)
    assert result.actual == "24.1667" and result.upper_bound == 24.0
    assert "newest ts is 2026-01-08T23:50:00+00:00, as of 2026-01-10T00:00:00+00:00" in result.message


def test_results_and_alerts_are_queryable(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    result = CheckResult(origin="ingest", table="t/2026-01-01.parquet", check="landing_schema", column="amount",
                         metric="type", severity="error", status="fail", passed=False, expected="double", actual="string")
    with duckdb.connect(str(warehouse)) as con:
        insert_checks(con, "run1", [result])
    record_alert(warehouse, "run1", stage="ingest", severity="error", checks=[result.label], message="boom")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select run_id, check_name, column_name, expected, actual, severity, passed "
                           "from validation.check_results").fetchall() == [
            ("run1", "landing_schema", "amount", "double", "string", "error", False)]
        assert con.execute("select stage, checks from validation.alerts").fetchall() == [
            ("ingest", ["landing_schema on t/2026-01-01.parquet.amount"])]


def test_days_too_small_to_judge_are_recorded_not_judged_never_passed(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema m; create table m.all_small as select * from (values "
                    "('2026-01-01', 'label_rate', 0.008, 0.01, 0.25, null, null, null::boolean),"
                    "('2026-01-02', 'label_rate', 0.008, 0.0, 0.25, null, null, null::boolean)"
                    ") v(segment, metric, expected, actual, threshold, lower_bound, upper_bound, passed);"
                    "create table m.one_small as select * from (values "
                    "('2026-01-01', 'label_rate', 0.008, 0.009, 0.25, 0.002, 0.032, true),"
                    "('2026-01-02', 'label_rate', 0.008, 0.0, 0.25, null, null, null::boolean)"
                    ") v(segment, metric, expected, actual, threshold, lower_bound, upper_bound, passed)")
    results = {"results": [{"unique_id": "test.p.metric", "status": "pass", "failures": 0, "relation_name": t}
                           for t in ("m.all_small", "m.one_small")]}
    none_judged, one_judged = dbt_results(results, _manifest(), warehouse, "_audit")
    assert (none_judged.status, none_judged.passed, none_judged.halts) == ("not judged", None, False)
    assert "2 of 2 days not judged" in none_judged.message
    assert one_judged.passed is True and "1 of 2 days not judged" in one_judged.message
