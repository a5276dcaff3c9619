"""Run the bundle's feature SQL over request records in a locked-down, in-memory DuckDB.

The database holds only the bundle's frozen tables. It cannot read or write files, attach
databases, install or load extensions, or change its own settings: the configuration is locked
after the frozen tables are loaded. Request values reach it only as an Arrow table, never as
SQL text.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from serving.errors import BundleError, FeatureComputationError

DUCKDB_LOCKDOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
}


@dataclass(frozen=True)
class FeatureEngineOptions:
    """Resource limits of the serving DuckDB."""

    memory_limit: str = "512MB"
    """DuckDB memory_limit for the in-memory database."""
    threads: int = 1
    """DuckDB threads; one keeps single-record latency low and leaves cores to ONNX Runtime."""


class FeatureEngine:
    """Computes feature vectors from request tables. Thread-safe: one cursor per thread."""

    def __init__(self, sql: str, tables: dict[str, pa.Table], feature_names: tuple[str, ...],
                 options: FeatureEngineOptions = FeatureEngineOptions()) -> None:
        self._sql = sql
        self._feature_names = feature_names
        self._db = duckdb.connect(
            ":memory:",
            config={**DUCKDB_LOCKDOWN, "memory_limit": options.memory_limit, "threads": options.threads},
        )
        for name, table in tables.items():
            self._db.register("__frozen", table)
            self._db.execute(f'create table "{name}" as select * from __frozen')
            self._db.unregister("__frozen")
        # UTC whatever the process's TZ: a zoned request timestamp means the same instant as in the warehouse.
        self._db.execute("set TimeZone = 'UTC'")
        self._db.execute("set lock_configuration = true")
        self._local = threading.local()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the locked-down database (also what security probes go through)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self._db.cursor()
        return cur

    def features_table(self, request: pa.Table, relations: dict[str, pa.Table] | None = None) -> pa.Table:
        """Run the feature SQL; one output row per request row, in request order. ``relations``:
        the request's entity events (``serving.entity_state``), registered beside it."""
        cur = self.cursor()
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
