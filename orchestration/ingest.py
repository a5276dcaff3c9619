"""Discover landing partitions, check each new file against the dbt source's declared columns,
and load it into the raw table exactly once, logging file, rows, checksum and load time in
``raw.ingestion_log``.

- A partition already logged with the same checksum is skipped, so re-delivering it duplicates
  nothing; a partition that arrives late (after later days) is new and loads like any other.
- The same name with different bytes is reported. If the old version was never published (the
  run that loaded it halted on a failed check, so nothing consumed it), the re-delivery replaces
  it; once published it is an error that names the file and both checksums.
- ``reload`` (``orchestrate.py backfill --start --end``) reloads every partition in a range of
  days whatever its state: the deliberate way to take corrected partitions that were published.
- Every landing check (file name, readability, schema, time zone, every page's integrity,
  re-delivery, empty file, missing days, and the row checks of ``orchestration.landing_rows``:
  event keys, partition days, finite numbers) is returned as a ``CheckResult``; any
  error-severity failure halts before anything is loaded.
- A new file is read once: its checksum is of the bytes its rows are decoded from, every page is
  decoded (page checksums verified where the writer wrote them, values checked against the row
  groups' statistics), and those rows are what loads.
- Files that look like data but are not named ``YYYY-MM-DD.parquet`` (``.parq``, ``.PARQUET``) are
  a named warning; a directory with a partition's name is an error.
- Time is UTC: the connection's DuckDB ``TimeZone`` is UTC whatever the process's ``TZ``. A
  timestamp with a zone is stored as UTC; one without is refused unless the source declares its
  zone (``meta.landing.time_zone``), and then converted from it.

New partitions load in one transaction with their log rows: a killed run loads nothing.
Which files are partitions, and each one's name, day and reader, is ``orchestration.landing_layout``
(daily Parquet or CSV files, hive-style day folders).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestration.checks import CheckResult, insert_checks
from orchestration.errors import LandingError
from orchestration.landing_layout import LandingReadError, file_schema, partition_day, partition_name, scan_sql
from orchestration.landing_layout import partition_files as layout_files
from orchestration.landing_rows import INCOMING, LandingRules, row_checks
from training.warehouse import connect_warehouse

# Names that look like landing data: what is not a partition among them is reported, never ignored.
DATA_LIKE = re.compile(r"\.(parquet|parq|pqt|pq)$", re.IGNORECASE)
RAW_SCHEMA = "raw"
# The column the raw table adds: the landing file a row came from, as read_parquet(filename=true)
# names it, so staging reads the raw table and the landing files alike.
FILE_COLUMN = "filename"
DUCKDB_TYPES = {"string": "varchar", "double": "double", "integer": "bigint", "boolean": "boolean",
                "timestamp": "timestamp"}


@dataclass(frozen=True)
class Partition:
    """One landing file."""

    path: Path
    """Where it lands: ``<landing>/<table>/YYYY-MM-DD.parquet``."""
    day: dt.date
    """The day its name says it holds."""
    sha256: str
    """Checksum of its bytes."""
    rows: int
    """Number of rows (from the Parquet footer)."""
    naive: tuple[str, ...] = ()
    """Timestamp columns stored without a time zone (in the zone the source declares)."""


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion did."""

    partitions: tuple[Partition, ...]
    """Every landing partition, checked, in day order."""
    loaded: tuple[Partition, ...]
    """Partitions loaded into the raw table now: new ones and replaced unpublished ones."""
    replaced: tuple[str, ...]
    """File names of unpublished partitions that were re-delivered with new bytes and reloaded."""
    checks: tuple[CheckResult, ...]
    """Landing checks made now (new and changed files, and the partition sequence)."""
    reloaded: tuple[str, ...] = ()
    """File names reloaded because they are in the backfill range (changed or not)."""


def arrow_kind(t: pa.DataType) -> str:
    """The serving type name of an Arrow type (see ``serving.bundle.INPUT_TYPES``)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def partition_files(landing: Path, table: str) -> list[Path]:
    """Landing files of ``table`` in every accepted layout (``orchestration.landing_layout``)."""
    return layout_files(landing, table)


def stray_checks(landing: Path, table: str) -> list[CheckResult]:
    """Entries that look like landing data but are not partitions: a warning each (an error for a
    directory named like a partition), so a misnamed file is never silently ignored."""
    folder = landing / table
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and DATA_LIKE.search(path.name):
            out.append(_problem(path, "landing_file_name", "is a directory, not a Parquet file; move its data "
                                "into one file named YYYY-MM-DD.parquet and remove the directory", metric="name",
                                expected="a file", actual="directory"))
        elif path.is_file() and DATA_LIKE.search(path.name) and not path.name.endswith(".parquet"):
            out.append(_problem(path, "landing_file_name", "looks like landing data but is not named "
                                "YYYY-MM-DD.parquet, so it is not ingested; rename it (lower-case .parquet) "
                                "to deliver it, or move it out of the landing folder", metric="name",
                                expected="YYYY-MM-DD.parquet", actual=path.name, severity="warn"))
    return out


def source_relation_vars(source: str, table: str) -> dict[str, str]:
    """The dbt var that points source ``source`` (``source_name.table``) at the ingested raw table:
    ``<source_name>_<table>_relation``, read by the source's ``meta.external_location``."""
    return {source.replace(".", "_") + "_relation": f"(select * from {raw_relation(table)})"}


def raw_relation(table: str) -> str:
    """The raw table ingestion loads landing partitions of ``table`` into."""
    return f"{RAW_SCHEMA}.{table}"


def _landing_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _problem(path: Path, check: str, message: str, *, column: str | None = None, metric: str = "file",
             expected: str | None = None, actual: str | None = None, severity: str = "error") -> CheckResult:
    return CheckResult(origin="ingest", table=_landing_name(path), check=check, column=column, metric=metric,
                       severity=severity, status="fail", passed=False, expected=expected, actual=actual,
                       message=f"{path}: {message}")


def schema_problems(path: Path, actual: dict[str, str], expected: dict[str, str]) -> list[CheckResult]:
    """Missing, renamed, re-typed and unexpected columns of one file, each naming column and types."""
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    renamed: dict[str, str] = {}
    for column in missing:
        # A rename is a missing column plus a new one of the same type, unambiguous by type or position.
        same_type = [c for c in extra if actual[c] == expected[column] and c not in renamed.values()]
        at_position = [c for c in same_type if list(actual).index(c) == list(expected).index(column)]
        candidates = same_type if len(same_type) == 1 else at_position
        if len(candidates) == 1:
            renamed[column] = candidates[0]
    problems = []
    for column, kind in expected.items():
        if column in renamed:
            new = renamed[column]
            problems.append(_problem(
                path, "landing_schema", f"column {column!r} ({kind}) is missing and {new!r} ({actual[new]}) is "
                f"unexpected: it looks renamed to {new!r}; rename it back upstream, or rename it in the dbt source",
                column=column, metric="column_name", expected=f"{column} ({kind})", actual=f"{new} ({actual[new]})"))
        elif column not in actual:
            problems.append(_problem(
                path, "landing_schema", f"column {column!r} is missing (expected {kind}); deliver it, or remove it "
                "from the dbt source", column=column, metric="type", expected=kind, actual="missing"))
        elif actual[column] != kind:
            problems.append(_problem(
                path, "landing_schema", f"column {column!r} has type {actual[column]}, expected {kind}; fix the "
                "export, or change the column's data_type in the dbt source", column=column, metric="type",
                expected=kind, actual=actual[column]))
    for column in extra:
        if column not in renamed.values():
            problems.append(_problem(
                path, "landing_schema", f"unexpected column {column!r} ({actual[column]}); declare it in the dbt "
                "source or drop it upstream", column=column, metric="type", expected="absent", actual=actual[column]))
    return problems


def _day(path: Path) -> dt.date | None:
    return partition_day(path)


def _zone_problems(path: Path, schema: pa.Schema, expected: dict[str, str],
                   zone: str | None) -> tuple[tuple[str, ...], list[CheckResult]]:
    naive = tuple(f.name for f in schema if f.name in expected and pa.types.is_timestamp(f.type) and not f.type.tz)
    if zone is not None:
        return naive, []
    return naive, [_problem(path, "landing_time_zone", f"column {c!r} is a timestamp without a time zone; write it "
                            "with one (timestamp[us, tz=UTC]), or declare the zone the source sends in the dbt "
                            "source's meta.landing.time_zone", column=c, metric="time_zone",
                            expected="a time zone", actual="none") for c in naive]


def _statistics_problem(path: Path, column: str, row_group: int, values: pa.ChunkedArray,
                        stats: pq.Statistics | None) -> CheckResult | None:
    """The decoded values of one column chunk against the statistics its writer put in the footer:
    bytes changed inside a page without a checksum still decode, to values outside them."""
    if stats is None:
        return None
    found: list[str] = []
    if stats.has_null_count and stats.null_count != values.null_count:
        found.append(f"{values.null_count} nulls where the footer says {stats.null_count}")
    # Numbers, times and booleans only: text statistics may be truncated by the writer.
    t = values.type
    exact = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t) or pa.types.is_boolean(t)
    if exact and stats.has_min_max and values.null_count < len(values):
        low, high = pc.min_max(values).values()
        if (low.as_py(), high.as_py()) != (stats.min, stats.max):
            found.append(f"values {low.as_py()} to {high.as_py()} where the footer says {stats.min} to {stats.max}")
    if not found:
        return None
    return _problem(path, "landing_integrity", f"column {column!r}, row group {row_group}: {'; '.join(found)}: the "
                    "pages do not hold what was written (corrupted bytes, footer intact); re-deliver the partition",
                    column=column, metric="row_group_statistics", expected="values as the footer's statistics say",
                    actual="; ".join(found))


def _read_columns(path: Path, file: pq.ParquetFile,
                  columns: list[str]) -> tuple[dict[str, pa.ChunkedArray], list[CheckResult]]:
    """Every page of every column, decoded and checked (page checksums where written, then the
    row groups' statistics); one problem per corrupt column, naming it."""
    meta = file.metadata
    index = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    out: dict[str, pa.ChunkedArray] = {}
    problems: list[CheckResult] = []
    for column in columns:
        chunks = []
        for i in range(meta.num_row_groups):
            try:
                values = file.read_row_group(i, columns=[column]).column(0)
            except (pa.ArrowException, OSError) as exc:
                problems.append(_problem(
                    path, "landing_integrity", f"column {column!r}, row group {i}: a page cannot be read ({exc}); "
                    "the file is corrupt though its footer is intact: re-deliver the partition", column=column,
                    metric="pages", expected="every page readable (checksums match)", actual=f"corrupt page: {exc}"))
                break
            problem = _statistics_problem(path, column, i, values, meta.row_group(i).column(index[column]).statistics)
            if problem:
                problems.append(problem)
                break
            chunks.extend(values.chunks)
        else:
            out[column] = pa.chunked_array(chunks, file.schema_arrow.field(column).type)
    return out, problems


def read_partition(path: Path, expected: dict[str, str], time_zone: str | None = "UTC",
                   ) -> tuple[Partition | None, pa.Table | None, list[CheckResult]]:
    """Read one landing file once, and check it against ``expected`` (column -> type name): its
    name, schema and time zones, and every page (see ``_read_columns``). The checksum is of the
    bytes the returned table was decoded from, so a file rewritten meanwhile cannot slip in
    unhashed. Naive timestamps are refused unless ``time_zone`` says which zone they are in."""
    day = _day(path)
    if day is None:
        return None, None, [_problem(path, "landing_file_name", "landing files must be named YYYY-MM-DD.parquet "
                                     "or YYYY-MM-DD.csv (one per day, a valid date), or sit in a hive-style day "
                                     "folder (date=YYYY-MM-DD/); rename or remove it", metric="name",
                                     expected="YYYY-MM-DD.parquet", actual=path.name)]
    if path.suffix == ".csv":
        return _read_csv_partition(path, day, expected, time_zone)
    try:
        data = path.read_bytes()
        file = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        schema = file.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        return None, None, [_problem(path, "landing_readable", f"not a readable Parquet file ({exc}); re-deliver "
                                     "the partition", metric="parquet", expected="readable Parquet",
                                     actual="unreadable")]
    problems = schema_problems(path, {f.name: arrow_kind(f.type) for f in schema}, expected)
    naive, zone_problems = _zone_problems(path, schema, expected, time_zone)
    if problems or zone_problems:
        return None, None, problems + zone_problems
    columns, corrupt = _read_columns(path, file, list(expected))
    if corrupt:
        return None, None, corrupt
    table = pa.table([columns[c] for c in expected], names=list(expected))
    partition = Partition(path, day, hashlib.sha256(data).hexdigest(), file.metadata.num_rows, naive)
    return partition, table, [CheckResult(origin="ingest", table=_landing_name(path), check="landing_schema",
                                          column=None, metric="columns", severity="error", status="pass",
                                          passed=True, expected=f"{len(expected)} declared columns", actual="match")]


def _read_csv_partition(path: Path, day: dt.date, expected: dict[str, str], time_zone: str | None,
                        ) -> tuple[Partition | None, pa.Table | None, list[CheckResult]]:
    """A CSV partition, read with the declared types (a value that does not cast is a landing error)."""
    sha = _sha256(path)
    try:
        schema, num_rows = file_schema(path, expected)
    except LandingReadError as exc:
        return None, None, [_problem(path, "landing_readable", f"{exc}; re-deliver the partition", metric="csv",
                                     expected="readable CSV", actual="unreadable")]
    problems = schema_problems(path, {f.name: arrow_kind(f.type) for f in schema}, expected)
    naive, zone_problems = _zone_problems(path, schema, expected, time_zone)
    if problems or zone_problems:
        return None, None, problems + zone_problems
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        table = con.execute(f"select * from {scan_sql([path], expected)}").fetch_arrow_table()
    partition = Partition(path, day, sha, num_rows, naive)
    return partition, table.select(list(expected)), [CheckResult(
        origin="ingest", table=_landing_name(path), check="landing_schema", column=None, metric="columns",
        severity="error", status="pass", passed=True, expected=f"{len(expected)} declared columns", actual="match")]


def check_partition(path: Path, expected: dict[str, str],
                    time_zone: str | None = "UTC") -> tuple[Partition | None, list[CheckResult]]:
    """``read_partition`` without the rows."""
    partition, _, checks = read_partition(path, expected, time_zone)
    return partition, checks


def inspect_partition(path: Path, expected: dict[str, str]) -> Partition:
    """Like ``check_partition``, raising ``LandingError`` with every problem of the file."""
    partition, checks = check_partition(path, expected)
    if partition is None:
        raise LandingError(f"{path}: " + "; ".join(c.message.removeprefix(f"{path}: ") for c in checks),
                           checks=tuple(c.label for c in checks))
    return partition


def _sequence_check(days: list[dt.date], landing: Path, table: str) -> CheckResult:
    missing = sorted(set(min(days) + dt.timedelta(n) for n in range((max(days) - min(days)).days + 1)) - set(days))
    shown = ", ".join(d.isoformat() for d in missing[:10]) + (" ..." if len(missing) > 10 else "")
    return CheckResult(
        origin="ingest", table=f"{landing.name}/{table}", check="partition_sequence", column=None,
        metric="missing_days", severity="warn", status="pass" if not missing else "fail", passed=not missing,
        expected="0", actual=str(len(missing)), expected_value=0.0, actual_value=float(len(missing)), upper_bound=0.0,
        message=f"no landing partition for {shown}: late or lost; when it arrives it is ingested like any new "
                "partition" if missing else "")


LOG_DDL = """
create schema if not exists raw;
create table if not exists raw.ingestion_log (
    file_name varchar primary key,
    partition_date date not null,
    count_rows bigint not null,
    sha256 varchar not null,
    loaded_at timestamp not null,
    run_id varchar not null
);
alter table raw.ingestion_log add column if not exists published_at timestamp;
"""


def _ensure_raw_table(con: duckdb.DuckDBPyConnection, relation: str, expected: dict[str, str]) -> None:
    columns = [*expected, FILE_COLUMN]
    con.execute(f"create table if not exists {relation} ("
                + ", ".join(f'"{c}" {DUCKDB_TYPES[k]}' for c, k in expected.items())
                + f', "{FILE_COLUMN}" varchar not null)')
    schema, table = relation.split(".")
    have = [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, table]).fetchall()]
    if have != columns:
        raise LandingError(
            f"{relation} has columns {have} but the dbt source declares {columns[:-1]} (+ {FILE_COLUMN}); the source "
            f"changed since partitions were loaded. Drop {relation} and raw.ingestion_log to reload every landing file."
        )


def _exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, table = relation.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                            [schema, table]).fetchone()[0])


def ingest(landing: Path, table: str, expected: dict[str, str], warehouse: Path, run_id: str,
           progress: Callable[[str], None] = lambda _: None,
           reload: tuple[dt.date, dt.date] | None = None, rules: LandingRules | None = None) -> IngestResult:
    """Check the landing partitions of ``table`` and load the new ones into ``raw.<table>``;
    with ``reload`` (first day, last day), reload every partition in that range too. ``rules``
    are the source's ``meta.landing`` (None: no row checks, naive timestamps are UTC)."""
    rules = rules or LandingRules(time_zone="UTC")
    paths = partition_files(landing, table)
    strays = stray_checks(landing, table)
    if not paths and strays:
        raise LandingError("no landing partitions, but:\n  " + "\n  ".join(c.message for c in strays),
                           checks=tuple(c.label for c in strays))
    if not paths:
        raise LandingError(
            f"{landing / table}: no landing partitions (expected files named YYYY-MM-DD.parquet). "
            "Deliver data there, or set demo_data.generate_if_empty: true in the config to generate demo data."
        )
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    relation = raw_relation(table)
    with connect_warehouse(warehouse) as con:
        con.execute("set enable_progress_bar = false")
        con.execute(LOG_DDL)
        logged = {name: (sha, rows, published) for name, sha, rows, published in con.execute(
            "select file_name, sha256, count_rows, published_at from raw.ingestion_log").fetchall()}
        # A log without its raw table (a warehouse from before the raw table existed): reload all.
        reload_all = bool(logged) and not _exists(con, relation)
        if reload_all:
            progress(f"{relation} is missing: reloading every landing partition")
            logged = {}
        partitions, new, replaced, reloaded, checks = [], [], [], [], list(strays)
        # New files' rows are staged here as each is read, for the row checks and the load.
        con.execute(f"create or replace temp table {INCOMING} as select "
                    + ", ".join(f'null::{DUCKDB_TYPES[k]} as "{c}"' for c, k in expected.items())
                    + ", null::varchar as filename, null::bigint as row_number limit 0")
        for i, path in enumerate(paths, 1):
            if i % 20 == 0 or i == len(paths):
                progress(f"checked {i}/{len(paths)} landing files")
            known = logged.get(partition_name(path))
            day = _day(path)
            if known and reload and day and reload[0] <= day <= reload[1]:
                partition, data, file_checks = read_partition(path, expected, rules.time_zone)
                checks.extend(file_checks)
                if partition is not None:
                    _stage_file(con, expected, partition, data, rules.time_zone)
                    partitions.append(partition)
                    replaced.append(partition)
                    reloaded.append(partition_name(path))
                continue
            sha = _sha256(path) if known else None
            if known and sha == known[0]:
                partitions.append(Partition(path, _day(path), sha, known[1]))  # type: ignore[arg-type]
                continue
            if known and known[2] is not None:
                checks.append(_problem(
                    path, "partition_unchanged", f"partition was already ingested with sha256 {known[0][:12]} and "
                    f"published, but now has {sha[:12]}; a changed re-delivery is not mixed in silently. Deliver "
                    "corrections as a new partition, or remove the old log and raw rows deliberately to reload.",
                    metric="sha256", expected=known[0][:12], actual=sha[:12]))
                continue
            partition, data, file_checks = read_partition(path, expected, rules.time_zone)
            checks.extend(file_checks)
            if partition is None:
                continue
            _stage_file(con, expected, partition, data, rules.time_zone)
            partitions.append(partition)
            (replaced if known else new).append(partition)
            if partition.rows == 0:
                checks.append(_problem(path, "partition_not_empty", "the partition has 0 rows; if the day really had "
                                       "no data this is fine, else re-deliver it", metric="rows", expected="> 0",
                                       actual="0", severity="warn"))
        if partitions:
            checks.append(_sequence_check([p.day for p in partitions], landing, table))
        incoming = sorted(new + replaced, key=lambda p: p.day)
        if not [c for c in checks if c.halts]:
            checks.extend(_row_checks(con, relation, expected, incoming, rules, table))
        insert_checks(con, run_id, checks)
        errors = [c for c in checks if c.halts]
        for c in checks if errors else ():  # a run that halts here still shows its warnings
            if c.warns:
                progress(f"WARN {c.label}: {c.message}")
        if errors:
            raise LandingError(f"{len(errors)} landing check(s) failed; nothing was loaded:\n  "
                               + "\n  ".join(c.message for c in errors), checks=tuple(c.label for c in errors))
        loaded = sorted(new + replaced, key=lambda p: p.day)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        con.execute("begin transaction")
        if reload_all:
            con.execute("delete from raw.ingestion_log")
        _ensure_raw_table(con, relation, expected)
        for p in replaced:
            con.execute(f'delete from {relation} where "{FILE_COLUMN}" = ?', [partition_name(p.path)])
            con.execute("delete from raw.ingestion_log where file_name = ?", [partition_name(p.path)])
            what = "backfill: reloading" if partition_name(p.path) in reloaded else "replacing unpublished"
            progress(f"{what} partition {partition_name(p.path)}: sha256 {logged[partition_name(p.path)][0][:12]} -> {p.sha256[:12]}")
        select = ", ".join(f'"{c}"' for c in expected)
        con.execute(f'insert into {relation} ({select}, "{FILE_COLUMN}") select {select}, filename from {INCOMING} '
                    'order by filename, row_number')
        for p in loaded:
            con.execute(
                "insert into raw.ingestion_log (file_name, partition_date, count_rows, sha256, loaded_at, run_id) "
                "values (?, ?, ?, ?, ?, ?)", [partition_name(p.path), p.day, p.rows, p.sha256, now, run_id])
        con.execute("commit")
    return IngestResult(tuple(sorted(partitions, key=lambda p: p.day)), tuple(loaded),
                        tuple(partition_name(p.path) for p in replaced if partition_name(p.path) not in reloaded), tuple(checks),
                        tuple(reloaded))


def _select(expected: dict[str, str], partition: Partition, zone: str | None) -> str:
    """The file's declared columns in the raw table's types; timestamps in UTC (a naive one read
    as the source's declared zone)."""
    out = []
    for c, kind in expected.items():
        if kind == "timestamp" and c in partition.naive and zone not in (None, "UTC"):
            out.append(f'cast(timezone(\'{zone}\', "{c}") as timestamp) as "{c}"')
        else:
            out.append(f'cast("{c}" as {DUCKDB_TYPES[kind]}) as "{c}"')
    return ", ".join(out)


def _stage_file(con: duckdb.DuckDBPyConnection, expected: dict[str, str], partition: Partition,
                data: pa.Table | None, zone: str | None) -> None:
    """Append one file's rows (as read and hashed) to temp table ``landing_incoming``, numbered in file order."""
    assert data is not None, "read_partition returns the rows with every partition"
    numbered = data.append_column("__landing_row", pa.array(range(1, data.num_rows + 1), pa.int64()))
    con.register("landing_file", numbered)
    try:
        con.execute(f"insert into {INCOMING} select {_select(expected, partition, zone)}, ?, __landing_row "
                    "from landing_file", [partition_name(partition.path)])
    finally:
        con.unregister("landing_file")


def _row_checks(con: duckdb.DuckDBPyConnection, relation: str, expected: dict[str, str], incoming: list[Partition],
                rules: LandingRules, table: str) -> list[CheckResult]:
    """The row checks over the new files' rows in ``landing_incoming`` and the loaded rows that stay."""
    replaced = ", ".join("'" + partition_name(p.path).replace("'", "''") + "'" for p in incoming)
    existing = None
    if _exists(con, relation):
        existing = f'select * from {relation}' + (f' where "{FILE_COLUMN}" not in ({replaced})' if replaced else "")
    return row_checks(con, table, expected, rules, existing)


def mark_published(con: duckdb.DuckDBPyConnection, published_at: dt.datetime) -> int:
    """Mark every loaded, not yet published partition as published; return how many."""
    rows = con.execute("update raw.ingestion_log set published_at = ? where published_at is null returning file_name",
                       [published_at]).fetchall()
    return len(rows)
