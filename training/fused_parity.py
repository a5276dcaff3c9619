"""Verify a fused model before it is sealed into a bundle: it loads, runs, and gives the SQL
path's features and scores on held-out rows and edge cases. Any failure switches it off (the
SQL path serves) with the reason in ``manifest.fused_refused``; nothing here may crash a run.

Rows the graph marks unsure are scored by the SQL path when served, so they are compared only
in that they are unsure; rows DuckDB raises an error for must be among them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from serving.bundle import Bundle
from serving.features import FeatureEngine
from serving.fused import FusedRunner
from serving.entity_state import EntityState
from serving.errors import FeatureComputationError
from serving.predictor import ModelScorer, _session
from serving.store import OnlineStore
from serving.request import Request
from serving.schema import arrow_to_request_table

FEATURE_RTOL = 1e-6
"""Features are float32 on both paths; the graph computes in float64 and casts at the end."""
PROBABILITY_ATOL = 1e-5
"""Binary and multiclass scores are probabilities: compared absolutely."""
REGRESSION_RTOL = 1e-5
"""Regression predictions can be in the thousands: compared relatively (to max(1, |y|))."""
SHOWN = 3
BATCH = 1000


@dataclass(frozen=True)
class FusedVerdict:
    """Whether the fused model may serve, and what was measured."""

    passed: bool
    detail: str
    """What was compared, or what failed (which rows, which feature or score)."""
    rows: int = 0
    unsure_rows: int = 0
    """Rows the graph left to the SQL path."""
    max_score_diff: float = 0.0
    tolerance: str = ""
    """The score tolerance, as stated in the gate report."""

    def to_json(self) -> dict[str, object]:
        return {"rows": self.rows, "unsure_rows": self.unsure_rows, "max_score_diff": self.max_score_diff,
                "tolerance": self.tolerance, "detail": self.detail}


def _sql_features(engine: FeatureEngine, request: pa.Table, relations: dict[str, pa.Table] | None,
                  width: int) -> np.ndarray | None:
    """The SQL path's feature matrix, or None when DuckDB raises for the request (then the
    production path answers the whole request with that error, 422)."""
    try:
        return engine.feature_matrix(engine.features_table(request, relations))
    except (duckdb.Error, FeatureComputationError):
        return None


def _both_paths(bundle: Bundle, runner: FusedRunner, batches: list[tuple[pa.Table, bool]],
                store: OnlineStore | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, pa.Table]:
    """Each batch through both paths on the same entity state; batches marked True are recorded
    after (held-out events, in order), the others not (edge cases are hypothetical)."""
    m = bundle.manifest
    state = EntityState(m.entity_state, m.input_schema, store) if m.entity_state and store is not None else None
    engine = FeatureEngine.for_bundle(bundle)
    out: list[tuple[np.ndarray, ...]] = []
    requests = []
    try:
        for raw, record in batches:
            request = Request.of_table(arrow_to_request_table(raw, m.input_schema))
            if state is not None and (distinct := state.distinct(request)) is not None:
                request = request.take(distinct[0])  # a re-sent event is scored once, as Predictor does
            gathered = state.gather(request) if state else []
            feeds = state.feeds(gathered, runner.event_inputs) if state else {}
            fused_matrix, output, unsure = runner.run(request, feeds)
            relations = state.tables(request, gathered) if state else None
            sql_matrix = _sql_features(engine, request.table, relations, len(m.feature_names))
            # DuckDB raises for the request: the fused graph must send some row to the SQL path,
            # which then answers the request with DuckDB's error, as the SQL path alone would.
            errors = np.full(request.num_rows, sql_matrix is None and not unsure.any(), dtype=bool)
            if sql_matrix is None:
                sql_matrix = np.full(fused_matrix.shape, np.nan, dtype=np.float32)
                unsure = np.ones(request.num_rows, dtype=bool)  # nothing of this request is answered
            if state is not None and record:
                state.record(gathered)
            out.append((fused_matrix, output, unsure, sql_matrix, errors))
            requests.append(request.table)
    finally:
        engine.close()
    parts = list(zip(*out))
    return (*(np.concatenate(p) for p in parts), pa.concat_tables(requests))  # type: ignore[return-value]


def verify_fused(bundle: Bundle, replayed: pa.Table, edges: pa.Table | None = None,
                 store: OnlineStore | None = None) -> FusedVerdict:
    """Compare ``bundle``'s fused model with its SQL path: on ``replayed`` (held-out raw rows in
    event order, recorded into ``store`` as served) and ``edges`` (edge cases, not recorded)."""
    assert bundle.fused_bytes is not None and bundle.manifest.fused is not None
    task = bundle.manifest.task
    tolerance = (f"relative {REGRESSION_RTOL:g} (regression)" if task == "regression"
                 else f"absolute {PROBABILITY_ATOL:g} (probabilities)")
    batches = [(replayed.slice(i, BATCH), True) for i in range(0, replayed.num_rows, BATCH)]
    if edges is not None:  # one request each, so a case DuckDB refuses does not hide the others
        batches.extend((edges.slice(i, 1), False) for i in range(edges.num_rows))
    try:
        inputs = {f.name: f for f in bundle.manifest.input_schema}
        runner = FusedRunner(_session(bundle.fused_bytes, "fused.onnx"), [inputs[n] for n in bundle.manifest.fused["inputs"]],
                             tuple(bundle.manifest.fused.get("event_inputs", ())))
        fused_matrix, output, unsure, sql_matrix, errors, request = _both_paths(bundle, runner, batches, store)
    except Exception as exc:  # noqa: BLE001 (any failure to load or run switches the fused model off)
        return FusedVerdict(False, f"the fused graph does not load or run in ONNX Runtime: {str(exc)[:300]}")
    if (missed := errors & ~unsure).any():
        i = int(np.flatnonzero(missed)[0])
        return FusedVerdict(False, f"DuckDB raises an error for {int(missed.sum())} request row(s) the fused graph answers "
                                   f"(first: {request.slice(i, 1).to_pylist()[0]})", request.num_rows, int(unsure.sum()))
    scorer = ModelScorer(bundle)
    sure = ~unsure
    sql_scores = scorer.scores(sql_matrix[sure]) if sure.any() else np.zeros(0)
    fused_scores = scorer.task_scores(output)[sure]
    names = bundle.manifest.feature_names
    same = np.isclose(fused_matrix[sure], sql_matrix[sure], rtol=FEATURE_RTOL, atol=FEATURE_RTOL, equal_nan=True) | (
        np.isinf(fused_matrix[sure]) & (fused_matrix[sure] == sql_matrix[sure]))
    keys = np.flatnonzero(sure)
    diff = np.abs(np.asarray(fused_scores, np.float64) - np.asarray(sql_scores, np.float64))
    bound = REGRESSION_RTOL * np.maximum(1.0, np.abs(np.asarray(sql_scores, np.float64))) if task == "regression" \
        else np.full(diff.shape, PROBABILITY_ATOL)
    bad_scores = diff > bound
    if bad_scores.ndim > 1:
        bad_scores = bad_scores.any(axis=1)
    max_diff = float(np.nanmax(diff)) if diff.size else 0.0
    n, u = request.num_rows, int(unsure.sum())
    if not same.all():
        rows, columns = np.nonzero(~same)
        shown = "; ".join(f"{names[j]} on row {int(keys[i])}: fused {float(fused_matrix[keys[i], j])!r}, "
                          f"SQL {float(sql_matrix[keys[i], j])!r}" for i, j in list(zip(rows, columns))[:SHOWN])
        per_feature = {names[j]: int((~same[:, j]).sum()) for j in range(len(names)) if not same[:, j].all()}
        return FusedVerdict(False, f"features differ on {int((~same.all(axis=1)).sum())} of {n - u} rows "
                                   f"{per_feature}: {shown}", n, u, max_diff, tolerance)
    if bad_scores.any():
        i = int(np.flatnonzero(bad_scores)[0])
        return FusedVerdict(False, f"features equal, but scores differ on {int(bad_scores.sum())} of {n - u} rows beyond "
                                   f"{tolerance}: max |difference| {max_diff:.3g}, first on row {int(keys[i])}",
                            n, u, max_diff, tolerance)
    return FusedVerdict(True, f"fused parity passed on {n} rows ({u} unsure, scored by the SQL path): features equal "
                              f"(rtol {FEATURE_RTOL:g}), max score difference {max_diff:.2e} ({tolerance})",
                        n, u, max_diff, tolerance)
