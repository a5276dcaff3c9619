"""Run records in the warehouse (schema ``ops``): what ran, with which key, how long, what it did.

    ops.pipeline_runs  one row per ``orchestrate.py`` invocation that runs stages
    ops.stage_runs     one row per (run, stage): key, status, times, rows, summary, error

A stage's row is written as ``running`` before it starts and finished after, so a run killed
mid-stage leaves ``running`` behind: the next run sees the stage as interrupted and reruns it.
The latest *executed* row of a stage (not a ``skipped`` one) describes the state its effects
left in the warehouse; a stage is skipped only when that row succeeded with the same key.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from training.warehouse import connect_warehouse

DDL = """
create schema if not exists ops;
create table if not exists ops.pipeline_runs (
    run_id varchar primary key,
    command varchar not null,
    started_at timestamp not null,
    finished_at timestamp,
    status varchar not null,
    error varchar
);
create table if not exists ops.stage_runs (
    run_id varchar not null,
    stage varchar not null,
    key varchar not null,
    status varchar not null,
    reason varchar,
    started_at timestamp not null,
    finished_at timestamp,
    duration_s double,
    rows bigint,
    summary json,
    error varchar,
    key_parts json,
    output_digests json,
    attempts integer
);
"""

EXECUTED = ("running", "killed", "succeeded", "failed")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class LastExecution:
    """The latest executed (not skipped) record of a stage."""

    run_id: str
    key: str
    status: str
    """running (interrupted, when read by a later run), killed (marked so by a later run), succeeded or failed."""
    finished_at: dt.datetime | None
    key_parts: dict[str, str]
    output_digests: dict[str, str]


def _connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = connect_warehouse(warehouse)
    con.execute(DDL)
    return con


def mark_killed(warehouse: Path, run_id: str) -> int:
    """Mark every ``running`` run and stage ``killed``: called by a run holding the run lock, so no
    other run is alive. Returns how many runs were marked."""
    if not warehouse.exists():
        return 0
    why = f"the process ended without finishing (killed); marked by run {run_id}"
    with _connect(warehouse) as con:
        dead = con.execute("select count(*) from ops.pipeline_runs where status = 'running'").fetchone()[0]
        con.execute("update ops.pipeline_runs set status = 'killed', finished_at = ?, error = ? where status = 'running'",
                    [now(), why])
        con.execute("update ops.stage_runs set status = 'killed' where status = 'running'")
    return int(dead)


def start_pipeline(warehouse: Path, run_id: str, command: str) -> None:
    with _connect(warehouse) as con:
        con.execute("insert into ops.pipeline_runs values (?, ?, ?, null, 'running', null)", [run_id, command, now()])


def finish_pipeline(warehouse: Path, run_id: str, status: str, error: str | None) -> None:
    with _connect(warehouse) as con:
        con.execute("update ops.pipeline_runs set finished_at = ?, status = ?, error = ? where run_id = ?",
                    [now(), status, error, run_id])


def start_stage(warehouse: Path, run_id: str, stage: str, key: str, key_parts: dict[str, str], reason: str) -> None:
    with _connect(warehouse) as con:
        con.execute("insert into ops.stage_runs (run_id, stage, key, status, reason, started_at, key_parts) "
                    "values (?, ?, ?, 'running', ?, ?, ?)", [run_id, stage, key, reason, now(), json.dumps(key_parts)])


def finish_stage(warehouse: Path, run_id: str, stage: str, *, status: str, duration_s: float, rows: int | None,
                 summary: dict[str, Any] | None, error: str | None, output_digests: dict[str, str] | None,
                 attempts: int) -> None:
    with _connect(warehouse) as con:
        con.execute(
            "update ops.stage_runs set status = ?, finished_at = ?, duration_s = ?, rows = ?, summary = ?, error = ?, "
            "output_digests = ?, attempts = ? where run_id = ? and stage = ? and status = 'running'",
            [status, now(), duration_s, rows, json.dumps(summary, default=str) if summary is not None else None,
             error, json.dumps(output_digests) if output_digests is not None else None, attempts, run_id, stage])


def skip_stages(warehouse: Path, run_id: str, skipped: list[tuple[str, str, dict[str, str], str]]) -> None:
    """Record skipped stages, (stage, key, key parts, reason) each, in one connection: a no-op run
    writes all of its rows at once rather than one checkpoint per stage."""
    if not skipped:
        return
    at = now()
    with _connect(warehouse) as con:
        con.executemany("insert into ops.stage_runs (run_id, stage, key, status, reason, started_at, finished_at, "
                        "duration_s, key_parts) values (?, ?, ?, 'skipped', ?, ?, ?, 0, ?)",
                        [[run_id, stage, key, reason, at, at, json.dumps(parts)] for stage, key, parts, reason in skipped])


def last_executions(warehouse: Path) -> dict[str, LastExecution]:
    """Each stage's latest executed record; empty when the warehouse or the table is missing."""
    if not warehouse.exists():
        return {}
    with connect_warehouse(warehouse, read_only=True) as con:
        if not con.execute("select count(*) from information_schema.tables where table_schema = 'ops' "
                           "and table_name = 'stage_runs'").fetchone()[0]:
            return {}
        rows = con.execute(
            "select stage, run_id, key, status, finished_at, key_parts, output_digests from ops.stage_runs "
            "where status in ('running', 'killed', 'succeeded', 'failed') "
            "qualify row_number() over (partition by stage order by started_at desc) = 1").fetchall()
    return {stage: LastExecution(run_id, key, status, finished, json.loads(parts or "{}"), json.loads(digests or "{}"))
            for stage, run_id, key, status, finished, parts, digests in rows}


def stage_history(warehouse: Path, stage: str, limit: int = 5) -> list[float]:
    """Durations of the stage's latest successful executions, newest first."""
    with connect_warehouse(warehouse, read_only=True) as con:
        return [r[0] for r in con.execute(
            "select duration_s from ops.stage_runs where stage = ? and status = 'succeeded' "
            "order by started_at desc limit ?", [stage, limit]).fetchall()]


# --- pipeline health -------------------------------------------------------------------------

SLOW_FACTOR = 3.0
"""A stage more than this many times slower than the median of its history is reported."""
SLOW_MIN_SECONDS = 5.0
"""...unless it took less than this: small stages are noisy."""
VOLUME_DROP = 0.5
"""A new partition with fewer rows than this fraction of the trailing median is reported."""


def slow_stage_warning(stage: str, seconds: float, history: list[float]) -> str | None:
    """A warning when ``seconds`` is far above the stage's history (needs three earlier runs)."""
    if len(history) < 3 or seconds < SLOW_MIN_SECONDS:
        return None
    typical = statistics.median(history)
    if seconds > SLOW_FACTOR * typical:
        return (f"pipeline health: stage {stage} took {seconds:.1f}s, {seconds / typical:.1f}x the median "
                f"{typical:.1f}s of its last {len(history)} successful runs (ops.stage_runs)")
    return None


def volume_warnings(warehouse: Path, new_files: list[str]) -> list[str]:
    """Warnings for newly loaded partitions with far fewer rows than the 7 partitions before each."""
    if not new_files or not warehouse.exists():
        return []
    with connect_warehouse(warehouse, read_only=True) as con:
        rows = con.execute(
            "select file_name, count_rows, median(count_rows) over (order by partition_date rows between 7 preceding "
            "and 1 preceding) as trailing, count(*) over (order by partition_date rows between 7 preceding and 1 "
            "preceding) as n from raw.ingestion_log").fetchall()
    return [f"pipeline health: partition {name} has {count:,} rows, {count / trailing:.0%} of the trailing median "
            f"{trailing:,.0f} of the {n} partitions before it (raw.ingestion_log)"
            for name, count, trailing, n in rows
            if name in new_files and n >= 3 and trailing and count < VOLUME_DROP * trailing]
