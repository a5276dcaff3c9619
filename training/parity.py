"""Prove that serving computes what the warehouse computed: the training/serving parity check.

Held-out raw rows, exactly as they landed, go through the bundle's serving path as production
runs it: entity state from an online store built as of the start of the held-out window (every
landed event before it), fed the held-out events in order, each one recorded after it is scored.
Nothing is injected from the warehouse. The served features must equal the features mart's
point-in-time rows, and the served scores the model's scores on those rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from serving.bundle import Bundle
from serving.predictor import ModelScorer, Predictor
from serving.store import OnlineStore
from training.dbt_manifest import EntityStateModel, FeatureSpec
from training.online import store_as_of
from training.warehouse import connect_warehouse

FEATURE_RTOL = 1e-9
SCORE_ATOL = 1e-6
SHOWN_MISMATCHES = 5
REPLAY_BATCH = 1000
"""Records per request in the replay: a batch sees its earlier records as state, as one at a time would."""


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
            return (f"parity passed on {self.rows} raw rows replayed through the online store: features equal "
                    f"(rtol {self.feature_rtol:g}), max score difference {self.max_score_diff:.2e} "
                    f"(tolerance {self.score_atol:g})")
        if self.rows and self.mismatched_rows == 0:
            return (f"parity FAILED on scores: features equal on all {self.rows} rows, but the largest score "
                    f"difference {self.max_score_diff:.2e} is over the tolerance {self.score_atol:g}")
        shown = "; ".join(f"{m.feature} for key {m.key!r}: served {m.served!r}, warehouse {m.warehouse!r}"
                          for m in self.first_mismatches)
        return (f"parity FAILED on {self.mismatched_rows} of {self.rows} rows; differing features "
                f"{self.mismatches_by_feature}; max score difference {self.max_score_diff:.2e} "
                f"(tolerance {self.score_atol:g}). First: {shown}")


@dataclass(frozen=True)
class Replayed:
    """Raw rows served by a bundle in event order, with state from the online store."""

    keys: pa.Array
    """The features mart key of each row (the serving SQL's passthrough), in row order."""
    matrix: np.ndarray
    """The features the model scored, float32, in row order."""
    scores: np.ndarray
    """The served scores (``Predictions.scores``), in row order."""


def replay(bundle: Bundle, raw: pa.Table, warehouse: Path, key: str, time: str | None,
           states: tuple[EntityStateModel, ...], start: str, store: OnlineStore | None = None) -> Replayed:
    """Serve ``raw`` (held-out raw rows from ``start`` on, in event order) through ``bundle`` with
    a store holding every landed event before ``start`` (``store``, or a new one), recording each
    batch after scoring it."""
    # Without an event time (raw fields with no timestamp, hence no entity state) order is moot.
    order = (np.arange(raw.num_rows) if time is None else
             np.argsort(np.asarray(raw.column(time).to_numpy(zero_copy_only=False)), kind="stable"))
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(store_as_of(warehouse, states, start))
        predictor = Predictor(bundle, store=store, record=True)
        try:
            keys = predictor.features(raw).column(key).combine_chunks()  # reads the store, records nothing
            matrices, scores = [], []
            for start_row in range(0, len(order), REPLAY_BATCH):
                chunk = order[start_row:start_row + REPLAY_BATCH]
                served = predictor.predict(raw.take(pa.array(chunk)))
                matrices.append(served.features)
                scores.append(served.scores)
        finally:
            predictor.close()
    unsort = np.empty_like(order)
    unsort[order] = np.arange(len(order))
    matrix = np.concatenate(matrices)[unsort] if matrices else np.zeros((0, len(bundle.manifest.feature_names)), np.float32)
    served_scores = np.concatenate(scores)[unsort] if scores else np.zeros(0, np.float32)
    return Replayed(keys, matrix, served_scores)


def check_parity(bundle: Bundle, served: Replayed, warehouse: Path, spec: FeatureSpec, *,
                 feature_rtol: float = FEATURE_RTOL, score_atol: float = SCORE_ATOL) -> ParityReport:
    """Compare replayed serving (``replay``) with the features mart and the offline scores."""
    keys = served.keys
    with connect_warehouse(warehouse, read_only=True) as con:
        con.register("served_keys", pa.table({"__key": keys, "__order": pa.array(np.arange(len(keys)))}))
        columns = ", ".join(f'm."{c}"' for c in spec.features)
        mart = con.execute(
            f'select k.__order, m."{spec.key}" is not null as __found, {columns} from served_keys k '
            f'left join {one_row_per_key(spec)} m on m."{spec.key}" = k.__key order by k.__order'
        ).fetch_arrow_table()
    found = mart.column("__found").to_numpy(zero_copy_only=False)
    warehouse_matrix = np.column_stack(
        [mart.column(f).to_numpy(zero_copy_only=False).astype(np.float64) for f in spec.features]).astype(np.float32)
    # Both sides are the model's float32 inputs; a float32 ulp is the finest difference they can show.
    rtol = max(feature_rtol, float(np.finfo(np.float32).eps))
    same = np.isclose(served.matrix, warehouse_matrix, rtol=rtol, atol=0.0, equal_nan=True) | (
        np.isinf(served.matrix) & (served.matrix == warehouse_matrix)) | ~found[:, None]
    bad_rows = ~found | ~same.all(axis=1)
    by_feature = {f: int((~same[:, j]).sum()) for j, f in enumerate(spec.features) if not same[:, j].all()}
    first = [Mismatch(keys[i].as_py(), "<row>", "served", "missing from the features mart")
             for i in np.flatnonzero(~found)[:SHOWN_MISMATCHES]]
    for i, j in zip(*np.nonzero(~same)):
        if len(first) >= SHOWN_MISMATCHES:
            break
        first.append(Mismatch(keys[i].as_py(), spec.features[j], float(served.matrix[i, j]), float(warehouse_matrix[i, j])))
    offline = ModelScorer(bundle).scores(warehouse_matrix[found]) if found.any() else np.zeros(0, np.float32)
    diff = np.abs(np.asarray(served.scores)[found] - offline)
    return ParityReport(rows=len(keys), mismatched_rows=int(bad_rows.sum()), mismatches_by_feature=by_feature,
                        first_mismatches=tuple(first), max_score_diff=float(diff.max()) if diff.size else 0.0,
                        feature_rtol=feature_rtol, score_atol=score_atol)


def one_row_per_key(spec: FeatureSpec) -> str:
    """The mart with one row per key. A key is unique in a mart keyed by its events; a key that
    is a hash of the request fields (data without an id, see docs/bring-your-own-data.md) is
    shared by rows with identical fields, hence identical features: any one of them stands for all."""
    return (f'(select * from {spec.relation} qualify row_number() over '
            f'(partition by "{spec.key}" order by "{spec.label}") = 1)')


def held_out_raw_rows(files: list[Path], fields: list[str], rows: int, seed: int, time: str | None = None,
                      start: str | None = None, scan: str | None = None) -> pa.Table:
    """Held-out raw rows (input fields). With ``time`` and ``start``: the first ``rows`` from
    ``start`` in event order, a prefix of the window, so every earlier held-out event is among
    them and the replayed entity state is whole; else a seeded sample. ``scan`` is a DuckDB
    table function reading ``files`` in their layout (CSV, say); by default they are Parquet."""
    names = ", ".join(f'"{f}"' for f in fields)
    source, params = (scan, []) if scan else ("read_parquet(?)", [[str(p) for p in files]])
    with duckdb.connect() as con:
        # A zoned landing timestamp read as the warehouse stored it (UTC), whatever the process's TZ.
        con.execute("set TimeZone = 'UTC'")
        if time is not None and start is not None:
            return con.execute(
                f'select {names} from {source} where cast("{time}" as timestamp) >= cast(? as timestamp) '
                f'order by "{time}" limit {int(rows)}', [*params, start]).fetch_arrow_table()
        table = con.execute(f"select {names} from {source}", params).fetch_arrow_table()
    if table.num_rows <= rows:
        return table
    rng = np.random.default_rng(seed)
    return table.take(pa.array(np.sort(rng.choice(table.num_rows, size=rows, replace=False))))
