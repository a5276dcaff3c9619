"""Run the bundle's feature SQL over request records in a locked-down, in-memory DuckDB.

The database holds only the bundle's frozen tables, as read-only Arrow views. It cannot read or
write files (no temp directory either), install or load extensions, or change its own settings:
the configuration is locked when the connection opens, before any bundle-derived SQL exists.
The only SQL it runs is the bundle's feature SQL, checked first (``serving.sql_guard``: one
SELECT over the request, the frozen tables and the entity events), and relation names are never
put into SQL text. Request values reach it only as an Arrow table, never as SQL text.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from serving.bundle import Bundle
from serving.errors import BundleError, FeatureComputationError
from serving.sql_guard import check_feature_sql, check_identifier

DUCKDB_LOCKDOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "temp_directory": "",  # DuckDB's default (.tmp under the working directory) stays writable otherwise
    "lock_configuration": True,
}
_UNLOCKED = {k: v for k, v in DUCKDB_LOCKDOWN.items() if k != "lock_configuration"}


@dataclass(frozen=True)
class FeatureEngineOptions:
    """Resource limits of the serving DuckDB."""

    memory_limit: str = "512MB"
    """DuckDB memory_limit for the in-memory database."""
    threads: int = 1
    """DuckDB threads; one keeps single-record latency low and leaves cores to ONNX Runtime."""


class LockedCursor:
    """A cursor of the serving DuckDB that runs SELECT statements only."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor

    def execute(self, sql: str, parameters: object = None) -> duckdb.DuckDBPyConnection:
        kinds = [str(s.type).rsplit(".", 1)[-1] for s in duckdb.extract_statements(sql)]
        if kinds != ["SELECT"]:
            raise duckdb.PermissionException(
                f"the serving DuckDB runs one SELECT at a time, got {kinds}: ATTACH, PRAGMA, SET, COPY, "
                "INSTALL, UPDATE and the rest are refused before they reach the connection")
        return self._cursor.execute(sql, parameters)


class FeatureEngine:
    """Computes feature vectors from request tables. Thread-safe: one cursor per thread."""

    def __init__(self, sql: str, tables: dict[str, pa.Table], feature_names: tuple[str, ...],
                 options: FeatureEngineOptions = FeatureEngineOptions(), relations: tuple[str, ...] = (),
                 where: str = "bundle") -> None:
        """``relations``: the entity events relations the SQL may read beside the request and
        ``tables``; ``where``: the bundle, for error messages."""
        for name in (*tables, *relations):
            check_identifier(name, where, "relation name")
        check_feature_sql(sql, {*tables, *relations}, where)
        self._sql = sql
        self._tables = dict(tables)
        self._feature_names = feature_names
        self._db = duckdb.connect(
            ":memory:",
            config={**_UNLOCKED, "memory_limit": options.memory_limit, "threads": options.threads},
        )
        # UTC whatever the process's TZ (a zoned request timestamp is the warehouse's instant); the
        # TimeZone setting needs ICU loaded, so it is set just after connecting, then the lock.
        self._db.execute("set TimeZone = 'UTC'")
        self._db.execute("set lock_configuration = true")
        self._local = threading.local()

    @classmethod
    def for_bundle(cls, bundle: Bundle, options: FeatureEngineOptions = FeatureEngineOptions()) -> FeatureEngine:
        """The engine of a bundle's feature SQL, over its frozen tables and entity events relations."""
        m = bundle.manifest
        return cls(bundle.serving_sql, bundle.tables, m.feature_names, options,
                   tuple(e.relation for e in m.entity_state), str(bundle.path))

    def cursor(self) -> LockedCursor:
        """This thread's cursor, through which only SELECTs run: the configuration lock does not
        cover ATTACH (even of ':memory:') or profiling pragmas, so the statement kind is checked
        before anything reaches DuckDB. What security probes go through."""
        return LockedCursor(self._cursor())

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._db.cursor()
            for name, table in self._tables.items():  # read-only: an Arrow view cannot be updated
                cur.register(name, table)
        return cur

    def features_table(self, request: pa.Table, relations: dict[str, pa.Table] | None = None) -> pa.Table:
        """Run the feature SQL; one output row per request row, in request order. ``relations``:
        the request's entity events (``serving.entity_state``), registered beside it."""
        cur = self._cursor()  # the bundle's SQL was checked as one SELECT when the engine was built
        cur.register("request", request)
        for name, table in (relations or {}).items():
            cur.register(name, table)
        try:
            result = cur.execute(self._sql).fetch_arrow_table()
        except (duckdb.ConversionException, duckdb.OutOfRangeException, duckdb.InvalidInputException) as exc:
            raise FeatureComputationError(
                f"the features cannot be computed for these records: {str(exc).splitlines()[0]}. The feature SQL "
                "raises for them as the warehouse would; check the values (amounts past DECIMAL(18,2), say)") from exc
        finally:
            cur.unregister("request")
            for name in relations or {}:
                cur.unregister(name)
        if result.num_rows != request.num_rows:
            raise BundleError(
                f"feature SQL returned {result.num_rows} rows for {request.num_rows} records; "
                "serving SQL must be row-level (one output row per input row)"
            )
        return result

    def feature_matrix(self, features: pa.Table) -> np.ndarray:
        """Feature columns in model order as a float32 matrix (null -> NaN)."""
        missing = [n for n in self._feature_names if n not in features.column_names]
        if missing:
            raise BundleError(f"feature SQL does not produce the model's features {missing}")
        return np.column_stack(
            [features.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in self._feature_names]
        ).astype(np.float32)

    def close(self) -> None:
        self._db.close()
