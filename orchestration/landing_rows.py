"""Row-level landing checks, made at ingest on the new files before anything is loaded.

The dbt source declares, in its table ``meta.landing``, what identifies an event and when it
happened (see ``LandingRules``). Over the new files, together with the rows already loaded:

    event_key_not_blank   no null, empty or blank event key
    event_key_reused      a key already used by a different event (another event time), in an
                          earlier partition or the same one; an exact re-send (every value equal)
                          is not a reuse: staging keeps its first delivery
    event_key_conflict    a re-send of an event (same key and event time) with other values; the
                          check names the fields that differ, so dedup never has to pick a copy
    partition_owns_day    rows whose event time is outside the file's day by more than the
                          tolerance (exact re-sends of rows loaded from another partition aside):
                          they would rewrite a published day; deliver them through a backfill
    finite_values         NaN or infinite values in a double column

Each failing check names the file, column, expected and actual value, and halts the ingest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb

from orchestration.checks import CheckResult
from orchestration.errors import LandingError

INCOMING = "landing_incoming"


@dataclass(frozen=True)
class LandingRules:
    """What the dbt source declares about its rows (``meta.landing`` of the source table)."""

    event_key: str | None = None
    """Column that identifies an event; None skips the identity checks."""
    event_time: str | None = None
    """Column that says when the event happened; None skips the partition-day check."""
    time_zone: str | None = None
    """Zone of timestamps that arrive without one; None refuses naive timestamps."""
    day_tolerance_hours: float = 6.0
    """How far outside its partition's day an event may be (late or early events are legitimate)."""

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None, columns: dict[str, str]) -> LandingRules:
        landing = dict((meta or {}).get("landing") or {})
        unknown = set(landing) - {"event_key", "event_time", "time_zone", "day_tolerance_hours"}
        if unknown:
            raise LandingError(f"dbt source meta.landing has unknown keys {sorted(unknown)}; expected event_key, "
                               "event_time, time_zone, day_tolerance_hours")
        for key in ("event_key", "event_time"):
            if landing.get(key) is not None and landing[key] not in columns:
                raise LandingError(f"dbt source meta.landing.{key} is {landing[key]!r}, not a declared column "
                                   f"({sorted(columns)}); name one of the source's columns")
        rules = cls(**landing)
        if rules.event_time and columns[rules.event_time] != "timestamp":
            raise LandingError(f"dbt source meta.landing.event_time {rules.event_time!r} is "
                               f"{columns[rules.event_time]}, not a timestamp; name the event-time column")
        if not rules.day_tolerance_hours >= 0:
            raise LandingError(f"dbt source meta.landing.day_tolerance_hours must be >= 0, got "
                               f"{rules.day_tolerance_hours}")
        return rules


def _q(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _fail(table: str, file: str, check: str, column: str | None, metric: str, expected: str, actual: str,
          message: str, segment: str | None = None) -> CheckResult:
    return CheckResult(origin="ingest", table=f"{table}/{file}", check=check, column=column, metric=metric,
                       severity="error", status="fail", passed=False, expected=expected, actual=actual,
                       segment=segment, message=f"{table}/{file}: {message}")


def _passed(table: str, check: str, column: str | None, metric: str, files: int) -> CheckResult:
    return CheckResult(origin="ingest", table=table, check=check, column=column, metric=metric, severity="error",
                       status="pass", passed=True, expected="0", actual="0", count_segments=files,
                       count_failed_segments=0)


def _shown(files: list[str], limit: int = 5) -> str:
    return ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")


def row_checks(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], rules: LandingRules,
               existing: str | None) -> list[CheckResult]:
    """Checks over temp table ``landing_incoming`` (the new files' rows, with ``filename``) and
    ``existing`` (a query of the rows already loaded that stay, or None)."""
    files = [f for (f,) in con.execute(f"select distinct filename from {INCOMING} order by 1").fetchall()]
    if not files:
        return []
    out: list[CheckResult] = []
    cols = ", ".join(_q(c) for c in columns)
    out += _finite(con, table, columns, len(files))
    key, at = rules.event_key, rules.event_time
    if key is None:
        return out
    con.execute(f"""create or replace temp view landing_all as
        select {cols}, filename, true as is_incoming, hash({cols}) as row_hash from {INCOMING}
        {f"union all select {cols}, filename, false, hash({cols}) from ({existing})" if existing else ""}""")
    k = _q(key)
    blank = con.execute(f"select filename, count(*) from {INCOMING} where {k} is null or "
                        f"trim(cast({k} as varchar)) = '' group by 1 order by 1").fetchall()
    for file, n in blank:
        out.append(_fail(table, file, "event_key_not_blank", key, "blank_keys", "0", str(n),
                         f"{n} row(s) have a null, empty or blank {key!r}; every event needs its key. Fix the "
                         "export and re-deliver the file"))
    if not blank:
        out.append(_passed(table, "event_key_not_blank", key, "blank_keys", len(files)))
    out += _duplicates(con, table, columns, key, at, len(files))
    if at is not None:
        out += _partition_days(con, table, at, rules.day_tolerance_hours, len(files))
    return out


def _finite(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], files: int) -> list[CheckResult]:
    out = []
    for column in [c for c, kind in columns.items() if kind == "double"]:
        c = _q(column)
        bad = con.execute(f"select filename, count(*), count(*) filter (where isnan({c})) from {INCOMING} "
                          f"where isnan({c}) or isinf({c}) group by 1 order by 1").fetchall()
        for file, n, nan in bad:
            out.append(_fail(table, file, "finite_values", column, "non_finite", "0", str(n),
                             f"{n} value(s) of {column!r} are not finite ({nan} NaN, {n - nan} infinite); "
                             "deliver a null for a missing value, or fix the export, and re-deliver the file"))
        if not bad:
            out.append(_passed(table, "finite_values", column, "non_finite", files))
    return out


def _duplicates(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], key: str, at: str | None,
                files: int) -> list[CheckResult]:
    k = _q(key)
    differs = ", ".join(f"case when count(distinct hash({_q(c)})) > 1 then '{c}' end" for c in columns if c != key)
    times = f"count(distinct {_q(at)})" if at else "2"
    rows = con.execute(f"""
        with candidates as (
            select {k} as k from landing_all where {k} is not null and trim(cast({k} as varchar)) <> ''
            group by 1 having count(distinct row_hash) > 1 and bool_or(is_incoming)
        ),
        dupes as (
            select {k} as k, case when {times} > 1 then 'reused' else 'conflict' end as kind,
                list_filter([{differs}], x -> x is not null) as fields,
                list_sort(list_distinct(list(filename))) as files,
                list_distinct(list(filename) filter (where is_incoming)) as incoming
            from landing_all where {k} in (select k from candidates)
            group by 1
        ),
        -- The key's earliest partition owns it: the later ones are blamed (the only one, within a file).
        per_file as (select unnest(list_filter(incoming, f -> f <> files[1] or len(files) = 1)) as file, * from dupes)
        select file, kind, count(*), min(cast(k as varchar)), list_sort(list_distinct(flatten(list(fields)))),
            list_sort(list_distinct(flatten(list(files))))
        from per_file group by 1, 2 order by 1, 2""").fetchall()
    out = []
    for file, kind, n, example, fields, involved in rows:
        if kind == "reused":
            out.append(_fail(table, file, "event_key_reused", key, "reused_keys", "0", str(n),
                             f"{n} {key!r} value(s) (e.g. {example!r}) belong to different events (other "
                             f"{at or 'values'}) in partitions {_shown(involved)}; staging would keep only one "
                             "of each. Give new events new keys upstream and re-deliver the file"))
        else:
            out.append(_fail(table, file, "event_key_conflict", key, "conflicting_resends", "0", str(n),
                             f"{n} re-sent event(s) (e.g. {key} {example!r}) differ from another copy in "
                             f"{', '.join(fields)} (partitions {_shown(involved)}); a re-send must repeat the "
                             "event exactly. Correct the source, then re-deliver, or backfill the earlier day"))
    for check, metric in (("event_key_reused", "reused_keys"), ("event_key_conflict", "conflicting_resends")):
        if not any(r.check == check for r in out):
            out.append(_passed(table, check, key, metric, files))
    return out


def _partition_days(con: duckdb.DuckDBPyConnection, table: str, at: str, tolerance: float,
                    files: int) -> list[CheckResult]:
    t = _q(at)
    hours = f"interval {float(tolerance) * 3600:.0f} second"
    rows = con.execute(f"""
        with inc as (
            -- The partition's day: its name's date (YYYY-MM-DD.parquet, or date=YYYY-MM-DD/part.csv).
            select filename, {t} as event_at, row_hash,
                cast(regexp_extract(filename, '(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) as date) as day
            from landing_all where is_incoming
        ),
        outside as (
            select * from inc
            where event_at < day - {hours} or event_at >= day + interval 1 day + {hours}
        )
        select filename, any_value(day), count(*), min(event_at), max(event_at) from outside o
        where not exists (select 1 from landing_all a where a.row_hash = o.row_hash and a.filename <> o.filename)
        group by 1 order by 1""").fetchall()
    out = []
    for file, day, n, first, last in rows:
        lo = dt.datetime.combine(day, dt.time()) - dt.timedelta(hours=tolerance)
        hi = dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1, hours=tolerance)
        out.append(_fail(table, file, "partition_owns_day", at, "rows_outside_day", "0", str(n),
                         f"{n} row(s) have {at!r} outside the partition's day ({lo} to {hi} UTC, tolerance "
                         f"{tolerance:g}h): {first} to {last}. Rows of other days would rewrite those days; "
                         "deliver them in their own day's partition (orchestrate.py backfill for published "
                         "days), or raise meta.landing.day_tolerance_hours in the dbt source"))
    if not rows:
        out.append(_passed(table, "partition_owns_day", at, "rows_outside_day", files))
    return out
