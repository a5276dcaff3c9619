"""Check results and alerts, recorded in the warehouse's ``validation`` schema.

Every check a run makes becomes one row of ``validation.check_results``: ingestion's landing
checks, each dbt test and contract, and dbt source freshness. The distribution tests in
``dbt_project/macros/tests/`` store one metric row per day (dbt ``store_failures``); their check
row keeps the worst day and counts the failing ones. A run that halts, or passes with warnings,
writes one row to ``validation.alerts``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import duckdb

from training.warehouse import connect_warehouse

SEVERITIES = ("error", "warn")

DDL = """
create schema if not exists validation;
create table if not exists validation.check_results (
    run_id varchar not null,
    checked_at timestamp not null,
    origin varchar not null,
    table_name varchar not null,
    check_name varchar not null,
    column_name varchar,
    metric varchar not null,
    severity varchar not null,
    status varchar not null,
    passed boolean,
    expected varchar,
    actual varchar,
    threshold varchar,
    segment varchar,
    expected_value double,
    actual_value double,
    lower_bound double,
    upper_bound double,
    count_segments integer,
    count_failed_segments integer,
    check_id varchar,
    message varchar
);
create table if not exists validation.alerts (
    run_id varchar not null,
    raised_at timestamp not null,
    stage varchar,
    severity varchar not null,
    checks varchar[] not null,
    message varchar not null
);
"""


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: one row of ``validation.check_results``."""

    origin: str
    """Who ran it: ingest, dbt_test, dbt_model, dbt_freshness or baseline."""
    table: str
    """What was checked: a relation (``staging.stg_bank__transactions``), source or landing file."""
    check: str
    """The check's name: the dbt test macro (``null_fraction_vs_baseline``) or an orchestrator check."""
    column: str | None
    """Column checked, if the check is about one."""
    metric: str
    """What was measured (``null_fraction``, ``row_count``, ``type``, ``failing_rows``, ``age_hours``...)."""
    severity: str
    """``error`` halts the run when the check fails; ``warn`` is reported and recorded only."""
    status: str
    """dbt's status (pass, warn, fail, error, skipped, success) or pass/fail for orchestrator checks."""
    passed: bool | None
    """Whether the check passed; None when it did not run (skipped after an upstream failure)."""
    expected: str | None = None
    """Expected value, as text (a baseline value, a type name, 0 failing rows)."""
    actual: str | None = None
    """Actual value, as text."""
    threshold: str | None = None
    """The tolerance the check applies, as configured."""
    segment: str | None = None
    """The day (or partition) the expected and actual values are about, for per-day checks."""
    expected_value: float | None = None
    """``expected`` as a number, when it is one."""
    actual_value: float | None = None
    """``actual`` as a number, when it is one."""
    lower_bound: float | None = None
    """Lowest passing actual value, when the check has one."""
    upper_bound: float | None = None
    """Highest passing actual value, when the check has one."""
    count_segments: int | None = None
    """Days (or files) the check judged."""
    count_failed_segments: int | None = None
    """Of those, how many failed."""
    check_id: str | None = None
    """dbt's unique id of the test or model, for dbt checks."""
    message: str = ""
    """What went wrong and how to fix it, for failed checks; context otherwise."""

    @property
    def halts(self) -> bool:
        return self.passed is False and self.severity == "error"

    @property
    def warns(self) -> bool:
        return self.passed is False and self.severity == "warn"

    @property
    def label(self) -> str:
        return f"{self.check} on {self.table}" + (f".{self.column}" if self.column else "")

    def describe(self) -> str:
        """One line naming the check, column, expected and actual values."""
        where = f" on {self.segment}" if self.segment else ""
        text = f"{self.label}: {self.metric}{where} is {self.actual}, expected {self.expected}"
        if self.lower_bound is not None or self.upper_bound is not None:
            text += f" (allowed {_fmt(self.lower_bound) or '-inf'} to {_fmt(self.upper_bound) or 'inf'})"
        if self.threshold:
            text += f", threshold {self.threshold}"
        if self.count_failed_segments:
            text += f"; {self.count_failed_segments} of {self.count_segments} days failed"
        return text + (f"; {self.message}" if self.message else "")


def _fmt(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def insert_checks(con: duckdb.DuckDBPyConnection, run_id: str, results: Iterable[CheckResult]) -> None:
    """Append ``results`` to ``validation.check_results`` on an open connection."""
    rows = [(run_id, _now(), *astuple(r)) for r in results]
    if not rows:
        return
    ensure_tables(con)
    names = ", ".join(["run_id", "checked_at"] + [_COLUMN.get(f.name, f.name) for f in fields(CheckResult)])
    con.executemany(f"insert into validation.check_results ({names}) values ({', '.join('?' * len(rows[0]))})", rows)


_COLUMN = {"table": "table_name", "check": "check_name", "column": "column_name"}


def record_checks(warehouse: Path, run_id: str, results: Iterable[CheckResult]) -> None:
    with connect_warehouse(warehouse) as con:
        insert_checks(con, run_id, results)


def record_alert(warehouse: Path, run_id: str, *, stage: str | None, severity: str, checks: Iterable[str],
                 message: str) -> None:
    """Append one alert to ``validation.alerts``."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with connect_warehouse(warehouse) as con:
        ensure_tables(con)
        con.execute("insert into validation.alerts values (?, ?, ?, ?, ?, ?)",
                    [run_id, _now(), stage, severity, list(checks), message])


def summary(results: Iterable[CheckResult]) -> dict[str, int]:
    results = list(results)
    return {"checks": len(results), "passed": sum(r.passed is True for r in results),
            "warnings": sum(r.warns for r in results), "errors": sum(r.halts for r in results),
            "not_run": sum(r.passed is None for r in results)}


# --- dbt's artifacts -> check results -------------------------------------------------------

WORST_SEGMENT_SQL = """
select segment, metric, expected, actual, threshold, lower_bound, upper_bound,
       count(*) over () as count_segments,
       count(*) filter (where not passed) over () as count_failed_segments,
       count(*) filter (where passed is null) over () as count_not_judged
from {relation}
order by passed,
         greatest(actual - upper_bound, lower_bound - actual) / nullif(upper_bound - lower_bound, 0) desc nulls last,
         segment desc
limit 1
"""


def published_name(node: dict[str, Any], suffix: str) -> str:
    """``schema.alias`` of a model as consumers see it (the audit suffix removed)."""
    schema = node["schema"]
    if suffix and schema.endswith(suffix):
        schema = schema[: -len(suffix)]
    return f"{schema}.{node.get('alias') or node['name']}"


def _checked_table(manifest: dict[str, Any], node: dict[str, Any], suffix: str) -> str:
    parent = node.get("attached_node") or next(iter(node.get("depends_on", {}).get("nodes", [])), None)
    if parent in manifest["nodes"]:
        return published_name(manifest["nodes"][parent], suffix)
    if parent in manifest.get("sources", {}):
        source = manifest["sources"][parent]
        return f"source {source['source_name']}.{source['name']}"
    return node["name"]


def _arguments(node: dict[str, Any]) -> str | None:
    kwargs = {k: v for k, v in ((node.get("test_metadata") or {}).get("kwargs") or {}).items()
              if k not in ("model", "column_name")}
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or None


def _test_result(result: dict[str, Any], node: dict[str, Any], manifest: dict[str, Any], suffix: str,
                 con: duckdb.DuckDBPyConnection | None) -> CheckResult:
    status = result["status"]
    severity = str(node["config"].get("severity", "error")).lower()
    # A check that could not run cannot vouch for the data: dbt halts on it whatever its severity.
    if status == "error":
        severity = "error"
    base = dict(
        origin="dbt_test", table=_checked_table(manifest, node, suffix),
        check=(node.get("test_metadata") or {}).get("name") or node["name"],
        column=node.get("column_name"), severity=severity, status=status,
        passed={"pass": True, "skipped": None}.get(status, False), check_id=result["unique_id"],
        threshold=_arguments(node),
    )
    message = " ".join(str(result.get("message") or "").split())[:500] if status in ("error", "skipped") else ""
    stored = node["config"].get("store_failures") and result.get("relation_name") and con is not None
    if stored and status in ("pass", "warn", "fail"):
        row = con.execute(WORST_SEGMENT_SQL.format(relation=result["relation_name"])).fetchone()
        if row is not None:
            segment, metric, expected, actual, threshold, lower, upper, n, failed, not_judged = row
            if failed:
                # How to fix it, as the test declares (config meta.fix in macros/tests/).
                message = str((node["config"].get("meta") or {}).get("fix") or "")
            if not_judged and status == "pass":
                # Days too small to judge are not passes: a check that judged none is "not judged".
                message = f"{not_judged} of {n} days not judged (too few rows to tell)"
                if not_judged == n:
                    base = {**base, "status": "not judged", "passed": None}
            return CheckResult(**{**base, "threshold": _fmt(threshold)}, metric=metric, segment=segment,
                               expected=_fmt(expected), actual=_fmt(actual), expected_value=expected,
                               actual_value=actual, lower_bound=lower, upper_bound=upper,
                               count_segments=n, count_failed_segments=int(failed), message=message)
    failures = result.get("failures")
    return CheckResult(**base, metric="failing_rows", expected="0", actual=_fmt(failures),
                       expected_value=0.0, actual_value=None if failures is None else float(failures),
                       upper_bound=0.0, message=message)


def _model_result(result: dict[str, Any], node: dict[str, Any], suffix: str) -> CheckResult:
    status = result["status"]
    enforced = bool(node["config"].get("contract", {}).get("enforced"))
    return CheckResult(
        origin="dbt_model", table=published_name(node, suffix), check="contract" if enforced else "build",
        column=None, metric="build", severity="error", status=status,
        passed={"success": True, "skipped": None}.get(status, False), check_id=result["unique_id"],
        expected="success", actual=status,
        message=" ".join(str(result.get("message") or "").split())[:500] if status != "success" else "",
    )


def dbt_results(run_results: dict[str, Any], manifest: dict[str, Any], warehouse: Path,
                      suffix: str) -> list[CheckResult]:
    """One check result per test and model in dbt run/test results (run_results.json)."""
    out = []
    with connect_warehouse(warehouse, read_only=True) as con:
        for result in run_results.get("results", []):
            node = manifest["nodes"].get(result["unique_id"])
            if node is None:
                continue
            if node["resource_type"] == "test":
                out.append(_test_result(result, node, manifest, suffix, con))
            elif node["resource_type"] in ("model", "seed", "snapshot"):
                out.append(_model_result(result, node, suffix))
    return out


def _hours(criterion: dict[str, Any] | None) -> float | None:
    if not criterion or criterion.get("count") is None:
        return None
    per = {"minute": 1 / 60, "hour": 1.0, "day": 24.0}[criterion["period"]]
    return criterion["count"] * per


def freshness_results(sources: dict[str, Any], manifest: dict[str, Any]) -> list[CheckResult]:
    """One check result per source in ``dbt source freshness``'s sources.json."""
    out = []
    for result in sources.get("results", []):
        source = manifest.get("sources", {}).get(result["unique_id"], {})
        status = result["status"]
        criteria = result.get("criteria") or {}
        warn, error = _hours(criteria.get("warn_after")), _hours(criteria.get("error_after"))
        age = result.get("max_loaded_at_time_ago_in_s")
        field = source.get("loaded_at_field")
        message = (f"newest {field} is {result.get('max_loaded_at')}, as of {result.get('snapshotted_at')}"
                   if age is not None else " ".join(str(result.get("error") or result.get("message") or "").split()))
        if status != "pass" and age is not None:
            message += ("; deliver the missing data, or check the as-of (validation.freshness_as_of in the "
                        "pipeline config)")
        out.append(CheckResult(
            origin="dbt_freshness", table=f"source {source.get('source_name')}.{source.get('name')}",
            check="source_freshness", column=field, metric="age_hours",
            severity="warn" if status == "warn" else "error", status=status, passed=status == "pass",
            expected=f"<= {_fmt(warn)} h (warn), <= {_fmt(error)} h (error)",
            actual=_fmt(None if age is None else age / 3600), actual_value=None if age is None else age / 3600,
            upper_bound=error, threshold=f"warn_after {_fmt(warn)} h, error_after {_fmt(error)} h",
            check_id=result["unique_id"], message=message,
        ))
    return out


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
