"""Discover landing partitions, check each file against the dbt source's declared columns, and
record what was ingested (file, rows, checksum, load time) in ``raw.ingestion_log``.

A partition already logged with the same checksum is skipped; the same name with different bytes
is an error that names the file and both checksums, never silently mixed in.
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
import pyarrow.parquet as pq

from orchestration.errors import LandingError

PARTITION_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


@dataclass(frozen=True)
class Partition:
    """One landing file."""

    path: Path
    day: dt.date
    sha256: str
    rows: int


def arrow_kind(t: pa.DataType) -> str:
    """The serving type name of an Arrow type (see ``serving.bundle.INPUT_TYPES``)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_floating(t):
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
    folder = landing / table
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def inspect_partition(path: Path, expected: dict[str, str]) -> Partition:
    """Checksum and schema-check one landing file against ``expected`` (column -> type name)."""
    match = PARTITION_NAME.match(path.name)
    if not match:
        raise LandingError(f"{path}: landing files must be named YYYY-MM-DD.parquet (one per day)")
    try:
        day = dt.date.fromisoformat(match.group(1))
    except ValueError as exc:
        raise LandingError(f"{path}: {match.group(1)!r} is not a valid date") from exc
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        raise LandingError(f"{path}: not a readable Parquet file ({exc}); re-deliver the partition") from exc
    actual = {f.name: arrow_kind(f.type) for f in schema}
    problems = []
    for column, kind in expected.items():
        if column not in actual:
            problems.append(f"column {column!r} is missing (expected {kind})")
        elif actual[column] != kind:
            problems.append(f"column {column!r} has type {actual[column]}, expected {kind}")
    for column in actual.keys() - expected.keys():
        problems.append(f"unexpected column {column!r} ({actual[column]}); declare it in the dbt source or drop it upstream")
    if problems:
        raise LandingError(f"{path}: schema does not match the dbt source: " + "; ".join(problems))
    return Partition(path, day, _sha256(path), meta.num_rows)


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
"""


def ingest(landing: Path, table: str, expected: dict[str, str], warehouse: Path, run_id: str,
           progress: Callable[[str], None] = lambda _: None) -> tuple[list[Partition], list[Partition]]:
    """Check every landing file and log the new ones. Returns (all partitions, newly logged)."""
    paths = partition_files(landing, table)
    if not paths:
        raise LandingError(
            f"{landing / table}: no landing partitions (expected files named YYYY-MM-DD.parquet). "
            "Deliver data there, or set demo_data.generate_if_empty: true in the config to generate demo data."
        )
    partitions = []
    for i, path in enumerate(paths, 1):
        partitions.append(inspect_partition(path, expected))
        if i % 20 == 0 or i == len(paths):
            progress(f"checked {i}/{len(paths)} landing files")
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(LOG_DDL)
        logged = dict(con.execute("select file_name, sha256 from raw.ingestion_log").fetchall())
        changed = [p for p in partitions if p.path.name in logged and logged[p.path.name] != p.sha256]
        if changed:
            p = changed[0]
            raise LandingError(
                f"{p.path}: partition was already ingested with sha256 {logged[p.path.name][:12]} but now has "
                f"{p.sha256[:12]}; a changed re-delivery is not mixed in silently. Deliver corrections as a new "
                "partition, or remove the old log row deliberately to reload."
            )
        new = [p for p in partitions if p.path.name not in logged]
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        if new:
            con.executemany(
                "insert into raw.ingestion_log values (?, ?, ?, ?, ?, ?)",
                [(p.path.name, p.day, p.rows, p.sha256, now, run_id) for p in new],
            )
    return partitions, new
