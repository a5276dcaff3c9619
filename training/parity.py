"""Prove that serving computes what the warehouse computed: the training/serving parity check.

Held-out raw rows, exactly as they landed, go through the bundle's serving path (its compiled
feature SQL in the serving DuckDB, then ONNX Runtime). For each row the serving SQL is given
the entity state the warehouse used for that row (its point-in-time state, under a synthetic
entity key), so the comparison isolates the feature logic: served features must equal the
features mart row by row, and served scores must equal offline ONNX scores on the mart rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.bundle import Bundle
from serving.features import FeatureEngine
from serving.predictor import Predictor
from serving.schema import arrow_to_request_table
from training.dbt_manifest import EntitySnapshot, FeatureSpec

FEATURE_RTOL = 1e-9
SCORE_ATOL = 1e-6
SHOWN_MISMATCHES = 5


@dataclass(frozen=True)
class Mismatch:
    """One feature of one row that differs."""

    key: str
    feature: str
    served: object
    warehouse: object


@dataclass(frozen=True)
class ParityReport:
    """Outcome of a parity check."""

    rows: int
    """Raw rows replayed through the serving path."""
    mismatched_rows: int
    """Rows with at least one differing feature (or missing from the mart)."""
    mismatches_by_feature: dict[str, int] = field(default_factory=dict)
    """Feature -> number of rows where it differs."""
    first_mismatches: tuple[Mismatch, ...] = ()
    """The first few differences, for the message."""
    max_score_diff: float = 0.0
    """Largest |served score - offline ONNX score on the mart row|."""
    feature_rtol: float = FEATURE_RTOL
    score_atol: float = SCORE_ATOL

    @property
    def passed(self) -> bool:
        return self.rows > 0 and self.mismatched_rows == 0 and self.max_score_diff <= self.score_atol

    def describe(self) -> str:
        if self.passed:
            return (f"parity passed on {self.rows} raw rows: features equal (rtol {self.feature_rtol:g}), "
                    f"max score difference {self.max_score_diff:.2e} (tolerance {self.score_atol:g})")
        if self.rows and self.mismatched_rows == 0:
            return (f"parity FAILED on scores: features equal on all {self.rows} rows, but the largest score "
                    f"difference {self.max_score_diff:.2e} is over the tolerance {self.score_atol:g}")
        shown = "; ".join(f"{m.feature} for key {m.key!r}: served {m.served!r}, warehouse {m.warehouse!r}"
                          for m in self.first_mismatches)
        return (f"parity FAILED on {self.mismatched_rows} of {self.rows} rows; differing features "
                f"{self.mismatches_by_feature}; max score difference {self.max_score_diff:.2e} "
                f"(tolerance {self.score_atol:g}). First: {shown}")


def _same(served: pa.ChunkedArray, warehouse: pa.ChunkedArray, rtol: float) -> np.ndarray:
    """Elementwise equality with SQL null = null, floats within ``rtol``."""
    s = served.to_numpy(zero_copy_only=False).astype(np.float64)
    w = warehouse.to_numpy(zero_copy_only=False).astype(np.float64)
    return np.isclose(s, w, rtol=rtol, atol=0.0, equal_nan=True) | (np.isinf(s) & (s == w))


def _state_per_row(warehouse: Path, snapshot: EntitySnapshot, keys: pa.Array,
                   snapshot_schema: pa.Schema) -> tuple[pa.Table, list[str]]:
    """The warehouse's point-in-time state of each row, keyed by a synthetic entity id."""
    synthetic = [f"parity{i:09d}" for i in range(len(keys))]
    lookup = pa.table({"__event_key": keys, "__synthetic": pa.array(synthetic)})
    columns = ", ".join(f's."{c}"' for c in snapshot_schema.names if c != snapshot.key)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.register("lookup", lookup)
        state = con.execute(
            f'select l.__synthetic as "{snapshot.key}", {columns} from lookup l '
            f'left join {snapshot.state_at_event_relation} s on s."{snapshot.event_key}" = l.__event_key'
        ).fetch_arrow_table()
    return state.cast(snapshot_schema), synthetic


@dataclass(frozen=True)
class PointInTimeServing:
    """Raw rows served by a bundle, each with the entity state the warehouse had for it."""

    keys: pa.Array
    """The features mart key of each row (from the serving SQL's passthrough), in row order."""
    features: pa.Table
    """The serving SQL's output."""
    matrix: np.ndarray
    """Features in model order, float32, as the model receives them."""


def serve_point_in_time(bundle: Bundle, raw: pa.Table, warehouse: Path, key: str,
                        snapshots: tuple[EntitySnapshot, ...]) -> PointInTimeServing:
    """Run ``raw`` rows through the bundle's serving SQL with point-in-time entity state.

    A first pass reads each row's key; then each row's user (or other entity) is replaced by a
    synthetic id whose snapshot entry is the warehouse's state as of just before that row, so the
    exact deployed SQL runs without the look-ahead a present-day snapshot would give old rows.
    """
    request = arrow_to_request_table(raw, bundle.manifest.input_schema)
    engine = FeatureEngine(bundle.serving_sql, bundle.tables, bundle.manifest.feature_names)
    try:
        keys = engine.features_table(request).column(key).combine_chunks()
    finally:
        engine.close()

    tables = dict(bundle.tables)
    for snap in snapshots:
        if snap.model not in tables:
            continue  # this bundle does not use that entity
        state, synthetic = _state_per_row(warehouse, snap, keys, bundle.tables[snap.model].schema)
        tables[snap.model] = state
        idx = request.schema.get_field_index(snap.raw_key_field)
        request = request.set_column(idx, snap.raw_key_field, pa.array(synthetic))
    engine = FeatureEngine(bundle.serving_sql, tables, bundle.manifest.feature_names)
    try:
        served = engine.features_table(request)
        return PointInTimeServing(keys, served, engine.feature_matrix(served))
    finally:
        engine.close()


def check_parity(bundle: Bundle, raw: pa.Table, warehouse: Path, spec: FeatureSpec,
                 snapshots: tuple[EntitySnapshot, ...], *, feature_rtol: float = FEATURE_RTOL,
                 score_atol: float = SCORE_ATOL, served: PointInTimeServing | None = None) -> ParityReport:
    """Replay ``raw`` rows (raw input fields, as landed) through the serving path and compare.

    ``served``: the result of ``serve_point_in_time`` for these rows, when the caller has it already.
    """
    pit = served or serve_point_in_time(bundle, raw, warehouse, spec.key, snapshots)
    keys, served, served_matrix = pit.keys, pit.features, pit.matrix

    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.register("served_keys", pa.table({"__key": keys, "__order": pa.array(np.arange(len(keys)))}))
        columns = ", ".join(f'm."{c}"' for c in spec.features)
        mart = con.execute(
            f'select k.__order, m."{spec.key}" is not null as __found, {columns} from served_keys k '
            f'left join {spec.relation} m on m."{spec.key}" = k.__key order by k.__order'
        ).fetch_arrow_table()

    found = mart.column("__found").to_numpy(zero_copy_only=False)
    bad_rows = ~found
    by_feature: dict[str, int] = {}
    first: list[Mismatch] = [Mismatch(keys[i].as_py(), "<row>", "served", "missing from the features mart")
                             for i in np.flatnonzero(~found)[:SHOWN_MISMATCHES]]
    for feature in spec.features:
        same = _same(served.column(feature), mart.column(feature), feature_rtol) | ~found
        if not same.all():
            by_feature[feature] = int((~same).sum())
            bad_rows |= ~same
            for i in np.flatnonzero(~same)[: max(0, SHOWN_MISMATCHES - len(first))]:
                first.append(Mismatch(keys[i].as_py(), feature, served.column(feature)[i].as_py(),
                                      mart.column(feature)[i].as_py()))

    scorer = Predictor(bundle)
    try:
        served_scores = scorer.score_matrix(served_matrix)
        mart_matrix = np.column_stack(
            [mart.column(f).to_numpy(zero_copy_only=False).astype(np.float64) for f in spec.features]
        ).astype(np.float32)
        offline_scores = scorer.score_matrix(mart_matrix[found]) if found.any() else np.zeros(0, np.float32)
    finally:
        scorer.close()
    diff = np.abs(served_scores[found] - offline_scores)
    return ParityReport(
        rows=len(keys),
        mismatched_rows=int(bad_rows.sum()),
        mismatches_by_feature=by_feature,
        first_mismatches=tuple(first[:SHOWN_MISMATCHES]),
        max_score_diff=float(diff.max()) if len(diff) else 0.0,
        feature_rtol=feature_rtol,
        score_atol=score_atol,
    )


def held_out_raw_rows(files: list[Path], fields: list[str], rows: int, seed: int) -> pa.Table:
    """A seeded sample of raw rows (input fields only) from held-out landing files."""
    with duckdb.connect() as con:
        table = con.execute(
            f"select {', '.join(f'{chr(34)}{f}{chr(34)}' for f in fields)} from read_parquet(?)",
            [[str(p) for p in files]],
        ).fetch_arrow_table()
    if table.num_rows <= rows:
        return table
    rng = np.random.default_rng(seed)
    return table.take(pc.cast(pa.array(np.sort(rng.choice(table.num_rows, size=rows, replace=False))), pa.int64()))
