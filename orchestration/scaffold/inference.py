"""Read a landing folder and infer what ``init`` needs: the table, its layout, each column's
serving type, and which columns are the key, the event time and the label.

Nothing here writes files; ``writer.py`` turns a ``LandingSchema`` into a project.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from orchestration.landing_layout import DUCKDB_TYPES, file_format, partition_day, partition_files, scan_sql
from orchestration.scaffold.errors import ScaffoldError

TASKS = ("binary", "multiclass", "regression")
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
# DuckDB's types as the dbt source declares them (serving types in landing_layout.DUCKDB_TYPES).
KINDS = {
    "VARCHAR": "string", "BOOLEAN": "boolean", "DOUBLE": "double", "FLOAT": "double", "REAL": "double",
    "BIGINT": "integer", "INTEGER": "integer", "SMALLINT": "integer", "TINYINT": "integer", "UBIGINT": "integer",
    "UINTEGER": "integer", "USMALLINT": "integer", "UTINYINT": "integer", "HUGEINT": "integer",
    "TIMESTAMP": "timestamp", "TIMESTAMP_NS": "timestamp", "TIMESTAMP_MS": "timestamp", "TIMESTAMP_S": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp", "DATE": "timestamp",
}
SAMPLE_ROWS = 20_000
"""Rows read to infer types and describe the data; the schema itself comes from the files' footers or headers."""


@dataclass(frozen=True)
class InitOptions:
    """What ``orchestrate.py init`` was asked for."""

    landing: Path
    """The table's landing folder (``<landing>/<table>/``), holding daily files or day folders."""
    label: str
    """Landing column to predict."""
    timestamp: str | None = None
    """Landing column with each event's time; None: the only timestamp column, else the partition's day."""
    key: str | None = None
    """Landing column identifying an event; None: a hash of the request fields."""
    task: str | None = None
    """binary, multiclass or regression; None: inferred from the label."""
    out: Path = Path(".")
    """Folder that receives ``dbt_project/`` and ``pipeline.yml``."""
    force: bool = False
    """Overwrite files already there."""


@dataclass(frozen=True)
class Column:
    """One landing column."""

    name: str
    """As it lands (any text: ``Sepal.Length`` is fine)."""
    kind: str
    """Serving type: string, double, integer, boolean or timestamp."""
    nulls: int
    """Null values in the sample."""
    distinct: int
    """Distinct values in the sample."""
    sample: Any
    """The first non-null sampled value (for the unit-test stub)."""

    @property
    def data_type(self) -> str:
        return DUCKDB_TYPES[self.kind]


@dataclass(frozen=True)
class LandingSchema:
    """What the landing folder holds, and the roles ``init`` gives its columns."""

    landing_root: Path
    """The folder above the table's (``paths.landing`` of the config)."""
    table: str
    """The table's folder name: the raw table ``raw.<table>`` and the dbt source table."""
    layout: str
    """``daily`` (YYYY-MM-DD files) or ``hive`` (key=YYYY-MM-DD folders)."""
    file_format: str
    """parquet or csv."""
    columns: tuple[Column, ...]
    """Every landing column, in file order."""
    days: tuple[dt.date, ...]
    """The landed days, in order."""
    rows: int
    """Rows in all files."""
    label: str
    task: str
    timestamp: str | None
    """The event-time column; None: the partition's day stands in (``landed_at``)."""
    key: str | None
    """The event key column; None: a hash of the request fields."""
    label_values: tuple[Any, ...] = ()
    """Distinct labels in the sample (classification)."""

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _files(landing: Path) -> tuple[Path, str, list[Path]]:
    if not landing.is_dir():
        raise ScaffoldError(f"--landing {landing}: not a folder; pass the table's landing folder, the one holding "
                            "YYYY-MM-DD.parquet|csv files or date=YYYY-MM-DD/ folders")
    table = landing.name
    if not TABLE_NAME.match(table):
        raise ScaffoldError(f"--landing {landing}: the folder name {table!r} becomes the raw table raw.{table} and "
                            "the dbt source table; rename the folder to lower-case letters, digits and _")
    files = partition_files(landing.parent, table)
    undated = [f for f in files if partition_day(f) is None]
    if not files:
        raise ScaffoldError(f"{landing}: no landing files; expected YYYY-MM-DD.parquet or YYYY-MM-DD.csv files, or "
                            "hive-style folders date=YYYY-MM-DD/ holding .parquet or .csv files. A single file with "
                            "no day: split it by day, or put it in one day folder (date=YYYY-MM-DD/data.csv)")
    if undated:
        raise ScaffoldError(f"{undated[0]}: no day in its name; name files YYYY-MM-DD.parquet|csv or put them in "
                            "date=YYYY-MM-DD/ folders (the day partitions the data and, without a timestamp "
                            "column, dates its rows)")
    formats = {file_format(f) for f in files}
    if len(formats) > 1:
        raise ScaffoldError(f"{landing}: holds both Parquet and CSV files; land one format per table")
    layout = "hive" if any(f.parent != landing for f in files) else "daily"
    if layout == "hive" and any(f.parent == landing for f in files):
        raise ScaffoldError(f"{landing}: mixes daily files and day folders; land one layout per table")
    return landing.parent, layout, files


def _describe(con: duckdb.DuckDBPyConnection, relation: str, names: list[str]) -> dict[str, tuple[int, int, Any]]:
    out = {}
    for name in names:
        q = '"' + name.replace('"', '""') + '"'
        nulls, distinct, first = con.execute(
            f"select count(*) - count({q}), count(distinct {q}), first({q}) filter (where {q} is not null) "
            f"from (select * from {relation} limit {SAMPLE_ROWS})").fetchone()
        out[name] = (nulls, distinct, first)
    return out


def infer(options: InitOptions) -> LandingSchema:
    """Read the landing folder and decide every column's type and role; refuse what would not run."""
    landing = options.landing.resolve()
    root, layout, files = _files(landing)
    relation = scan_sql(files, {})
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        described = con.execute(f"describe select * exclude (filename) from {relation}").fetchall()
        kinds: dict[str, str] = {}
        for name, duck_type, *_ in described:
            kind = KINDS.get(str(duck_type).upper())
            if kind is None:
                raise ScaffoldError(f"{landing}: column {name!r} has type {duck_type}, which the pipeline cannot "
                                    f"serve; land it as one of {sorted(set(KINDS))} (text, numbers, booleans or "
                                    "timestamps)")
            kinds[name] = kind
        # Ingest checks Parquet types as they are stored: float32 and dates would be refused there.
        stored = {n: str(t).upper() for n, t, *_ in described}
        refused = [n for n, t in stored.items() if t in ("FLOAT", "REAL", "DATE")]
        if file_format(files[0]) == "parquet" and refused:
            raise ScaffoldError(f"{landing}: column(s) {refused} are float32 or date in Parquet; ingest takes double "
                                "and timestamp: write them as such upstream")
        stats = _describe(con, relation, list(kinds))
        rows = con.execute(f"select count(*) from {relation}").fetchone()[0]
        label_values: tuple[Any, ...] = ()
        if options.label in kinds:
            q = '"' + options.label.replace('"', '""') + '"'
            label_values = tuple(r[0] for r in con.execute(
                f"select distinct {q} from (select * from {relation} limit {SAMPLE_ROWS}) where {q} is not null "
                f"order by 1 limit 101").fetchall())
    columns = tuple(Column(n, kinds[n], *stats[n]) for n in kinds)
    return _roles(options, root, landing.name, layout, file_format(files[0]), columns,
                  tuple(sorted({partition_day(f) for f in files})), rows, label_values)  # type: ignore[arg-type]


def _named(options: InitOptions, flag: str, value: str | None, columns: dict[str, Column]) -> None:
    if value is not None and value not in columns:
        raise ScaffoldError(f"{flag} {value!r} is not a column of {options.landing}; its columns are "
                            f"{sorted(columns)}")


def _roles(options: InitOptions, root: Path, table: str, layout: str, fmt: str, columns: tuple[Column, ...],
           days: tuple[dt.date, ...], rows: int, label_values: tuple[Any, ...]) -> LandingSchema:
    by_name = {c.name: c for c in columns}
    for flag, value in (("--label", options.label), ("--timestamp", options.timestamp), ("--key", options.key)):
        _named(options, flag, value, by_name)
    label = by_name[options.label]
    timestamp = options.timestamp
    if timestamp is None:
        found = [c.name for c in columns if c.kind == "timestamp" and c.name not in (options.label, options.key)]
        if len(found) > 1:
            raise ScaffoldError(f"{options.landing}: several timestamp columns {found}; pass --timestamp COLUMN, "
                                "the one saying when each event happened")
        timestamp = found[0] if found else None
    elif by_name[timestamp].kind != "timestamp":
        raise ScaffoldError(f"--timestamp {timestamp!r} is {by_name[timestamp].kind}, expected a timestamp column "
                            "(or leave --timestamp out: the partition's day then dates each row)")
    if options.key is not None and by_name[options.key].kind not in ("string", "integer"):
        raise ScaffoldError(f"--key {options.key!r} is {by_name[options.key].kind}, expected text or an integer id")
    named = [c for c in (options.label, timestamp, options.key) if c]
    if len(set(named)) < len(named):
        raise ScaffoldError(f"--label, --timestamp and --key must name different columns, got {named}")
    task = options.task or _task(label, label_values)
    if task not in TASKS:
        raise ScaffoldError(f"--task {task!r}: expected one of {TASKS}")
    if task == "binary" and not (label.kind == "boolean" or (label.kind == "integer" and set(label_values) <= {0, 1})):
        raise ScaffoldError(f"--label {label.name!r} for a binary task must be boolean or 0/1, found {label.kind} "
                            f"values {list(label_values)[:5]}; pass --task multiclass for more classes")
    if task == "regression" and label.kind not in ("double", "integer"):
        raise ScaffoldError(f"--label {label.name!r} for regression must be numeric, found {label.kind}")
    if task == "multiclass" and (label.kind not in ("string", "integer") or len(label_values) < 3):
        raise ScaffoldError(f"--label {label.name!r} for multiclass needs text or integer classes, at least 3; found "
                            f"{label.kind} with {len(label_values)} value(s)")
    if len(days) < 7:
        raise ScaffoldError(f"{options.landing}: {len(days)} day(s) landed; the time-based split needs at least 7 "
                            "(70/15/15 of the days into train, validation and test)")
    return LandingSchema(root, table, layout, fmt, columns, days, rows, label.name, task, timestamp, options.key,
                         label_values)


def _task(label: Column, values: tuple[Any, ...]) -> str:
    """binary for booleans and 0/1, multiclass for text or a few integers, else regression."""
    if label.kind == "boolean" or (label.kind == "integer" and set(values) <= {0, 1}):
        return "binary"
    if label.kind == "string" or (label.kind == "integer" and len(values) <= 20):
        return "multiclass"
    return "regression"
