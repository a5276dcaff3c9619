"""The one way the project opens the DuckDB warehouse file: in UTC.

DuckDB's session ``TimeZone`` defaults to the process's ``TZ``, and it decides how a zoned
timestamp becomes a naive one (and what ``current_timestamp`` casts to), so a run under
``TZ=America/New_York`` would store and compare instants 5 hours off. Every connection the
orchestrator and training make to the warehouse goes through ``connect_warehouse``; dbt's get
the same setting from ``profiles.yml``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def connect_warehouse(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse at ``path`` whose session time zone is UTC."""
    con = duckdb.connect(str(path), read_only=read_only)
    # Set after connecting: the setting needs the ICU extension, which a connect-time config cannot load.
    con.execute("set TimeZone = 'UTC'")
    return con
