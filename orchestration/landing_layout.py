"""Landing layouts ingest accepts, and how each file is named, dated and read.

    <landing>/<table>/YYYY-MM-DD.parquet            daily files (the default)
    <landing>/<table>/YYYY-MM-DD.csv                daily CSV files, with a header row
    <landing>/<table>/<key>=YYYY-MM-DD/<any>.parquet  hive-style partitions (any key: date=, dt=, day=...),
    <landing>/<table>/<key>=YYYY-MM-DD/<any>.csv      one or more files per day

A file's *partition name* is its name, or ``<key>=YYYY-MM-DD/<name>`` inside a hive folder: it
identifies the file in ``raw.ingestion_log`` and in the raw table's ``filename`` column, so two
days' ``part-0.parquet`` never collide. Its day comes from the file name or the hive folder.

CSV columns are read with the types the dbt source declares (never sniffed per file, which would
type one day's all-integer column differently from the next day's); a value that does not cast
is a landing error naming the file. Kept apart from ``ingest.py`` so the layout can grow (JSON
lines, say) without touching how partitions are checked and loaded.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("parquet", "csv")
DAILY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")
HIVE_FOLDER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=(\d{4}-\d{2}-\d{2})$")
DATA_FILE = re.compile(r"\.(parquet|csv)$")
DUCKDB_TYPES = {"string": "varchar", "double": "double", "integer": "bigint", "boolean": "boolean",
                "timestamp": "timestamp"}


class LandingReadError(ValueError):
    """A landing file that cannot be read as its format (or whose values do not cast)."""


def partition_files(landing: Path, table: str) -> list[Path]:
    """Every landing file of ``table``: ``*.parquet`` and ``*.csv`` in its folder (misnamed ones
    too, so ingest reports them) and the data files inside hive-style day folders, in
    (day, name) order."""
    folder = landing / table
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and DATA_FILE.search(p.name)]
    for sub in folder.iterdir():
        if sub.is_dir() and HIVE_FOLDER.match(sub.name):
            files.extend(p for p in sub.iterdir() if p.is_file() and DATA_FILE.search(p.name))
    return sorted(files, key=lambda p: (partition_day(p) or dt.date.min, partition_name(p)))


def is_hive(path: Path) -> bool:
    return bool(HIVE_FOLDER.match(path.parent.name))


def partition_name(path: Path) -> str:
    """The file's name, or ``<key>=YYYY-MM-DD/<name>`` in a hive folder."""
    return f"{path.parent.name}/{path.name}" if is_hive(path) else path.name


def partition_day(path: Path) -> dt.date | None:
    """The day the file holds, from its name (``YYYY-MM-DD.parquet``) or hive folder; None if neither says."""
    match = HIVE_FOLDER.match(path.parent.name) if is_hive(path) else DAILY_FILE.match(path.name)
    if not match or (is_hive(path) and not DATA_FILE.search(path.name)):
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def file_format(path: Path) -> str:
    return "csv" if path.name.endswith(".csv") else "parquet"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scan_sql(paths: list[Path], types: dict[str, str]) -> str:
    """A DuckDB table function reading ``paths`` (one format), with the file's path as
    ``filename``; CSV columns of ``types`` (column -> serving type) read as those types.
    Hive folders are never turned into columns: the day is the partition's, not data."""
    files = "[" + ", ".join(_literal(str(p)) for p in paths) + "]"
    formats = {file_format(p) for p in paths}
    if len(formats) != 1:
        raise LandingReadError(f"cannot scan Parquet and CSV files together: {sorted(formats)}")
    if formats == {"parquet"}:
        return f"read_parquet({files}, filename = true, hive_partitioning = false, union_by_name = true)"
    declared = ", ".join(f"{_literal(c)}: {_literal(DUCKDB_TYPES[k])}" for c, k in types.items())
    return (f"read_csv({files}, header = true, filename = true, hive_partitioning = false, union_by_name = true"
            + (f", types = {{{declared}}}" if declared else "") + ")")


def file_schema(path: Path, types: dict[str, str]) -> tuple[pa.Schema, int]:
    """The Arrow schema and row count of one landing file. A CSV is read in full with the
    declared ``types``, so a value that does not cast fails here, before anything is loaded."""
    try:
        if file_format(path) == "parquet":
            meta = pq.read_metadata(path)
            return meta.schema.to_arrow_schema(), meta.num_rows
        with duckdb.connect() as con:
            declared = {c: k for c, k in types.items() if c in _csv_header(con, path)}
            relation = scan_sql([path], declared)
            schema = con.execute(f"select * exclude (filename) from {relation} limit 0").fetch_arrow_table().schema
            # Counting each declared column reads (and casts) every value; count(*) alone would not.
            counts = "".join(f', count({_quoted(c)})' for c in declared)
            rows = con.execute(f"select count(*){counts} from {relation}").fetchone()[0]
        return schema, rows
    except (pa.ArrowException, OSError, duckdb.Error) as exc:
        shown = {"parquet": "Parquet", "csv": "CSV"}[file_format(path)]
        raise LandingReadError(f"not a readable {shown} file ({str(exc).splitlines()[0]})") from exc


def _csv_header(con: duckdb.DuckDBPyConnection, path: Path) -> set[str]:
    """The header's column names (declared types go only to columns the file has; a missing
    column is then reported by the schema check, not as a read error)."""
    relation = f"read_csv([{_literal(str(path))}], header = true, all_varchar = true)"
    return {d[0] for d in con.execute(f"select * from {relation} limit 0").description}
