"""Deployment gates: each returns a result with its value, threshold and verdict.

Gates: validation metrics, per-slice metrics on the scored test holdout (slices computed in
DuckDB), model size, single-record latency through the full serving path, no regression
against the champion on the same holdout, training/serving parity, and ONNX-vs-scikit-learn
agreement. A candidate is deployed only when every gate passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from serving.features import DUCKDB_LOCKDOWN
from serving.predictor import Predictor
from training.metrics import LOWER_IS_BETTER, PRIMARY_METRIC, task_metrics


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict."""

    gate: str
    """Gate name, e.g. ``metric validation.roc_auc`` or ``slice night: roc_auc``."""
    value: float | None
    """Measured value (None when it could not be measured)."""
    threshold: float | None
    """The bound it is compared with."""
    comparison: str
    """``>=`` or ``<=``: how value must relate to threshold."""
    passed: bool
    detail: str = ""
    """Why, when the numbers alone do not say (skipped slice, no champion...)."""
    blocking: bool = True
    """False for gates that only switch something off (the fused model) instead of stopping a deploy."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _bound(metric: str) -> str:
    return "<=" if metric in LOWER_IS_BETTER else ">="


def _meets(value: float, threshold: float, comparison: str) -> bool:
    return bool(value <= threshold) if comparison == "<=" else bool(value >= threshold)


def metric_gates(metrics: Mapping[str, float], thresholds: Mapping[str, float], split: str = "validation") -> list[GateResult]:
    results = []
    for metric, threshold in thresholds.items():
        cmp = _bound(metric)
        if metric not in metrics:
            results.append(GateResult(f"metric {split}.{metric}", None, threshold, cmp, False,
                                      f"no such metric; available: {sorted(metrics)}"))
            continue
        value = float(metrics[metric])
        results.append(GateResult(f"metric {split}.{metric}", value, threshold, cmp, _meets(value, threshold, cmp)))
    return results


def slice_gates(holdout: pa.Table, task: str, slices: Iterable[Any], classes: np.ndarray | None,
                threshold: float, label: str) -> list[GateResult]:
    """Compute each slice of ``holdout`` (features, ``label``, ``score``/``score_<i>``) in DuckDB."""
    results: list[GateResult] = []
    with duckdb.connect(":memory:", config={**DUCKDB_LOCKDOWN, "threads": 1}) as con:
        con.register("holdout", holdout)
        score_columns = [c for c in holdout.column_names if c == "score" or c.startswith("score_")]
        for sl in slices:
            if sl.by is not None:
                values = [r[0] for r in con.execute(f'select distinct "{sl.by}" from holdout order by 1').fetchall()]
                parts = [(f"{sl.name} = {_shown(v)}", f'"{sl.by}" is not distinct from ?', [v]) for v in values]
            else:
                parts = [(sl.name, sl.where, [])]
            for name, predicate, params in parts:
                try:
                    rows = con.execute(f'select "{label}", {", ".join(score_columns)} from holdout where {predicate}',
                                       params).fetchnumpy()
                except duckdb.Error as exc:
                    results.append(GateResult(f"slice {name}", None, None, "", False, f"predicate {predicate!r} failed: {exc}"))
                    continue
                y = rows[label]
                n = len(y)
                if n < sl.min_rows or (task != "regression" and len(np.unique(y)) < 2):
                    results.append(GateResult(f"slice {name}", float(n), float(sl.min_rows), ">=", True,
                                              f"not evaluable: {n} rows, {len(np.unique(y))} class(es); not blocking"))
                    continue
                output = (np.column_stack([1 - rows["score"], rows["score"]]) if task == "binary"
                          else rows["score"] if task == "regression"
                          else np.column_stack([rows[c] for c in score_columns]))
                metrics = task_metrics(task, y, output, classes=classes, threshold=threshold)
                for metric, bound in sl.thresholds.items():
                    cmp = _bound(metric)
                    value = metrics.get(metric)
                    if value is None:
                        results.append(GateResult(f"slice {name}: {metric}", None, bound, cmp, False, "no such metric"))
                    else:
                        results.append(GateResult(f"slice {name}: {metric}", float(value), bound, cmp,
                                                  _meets(value, bound, cmp), f"{n} rows"))
    return results


def _shown(value: Any) -> Any:
    """Slice values as people write them: 3, not 3.0 (features reach the holdout as float32)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def size_gate(model_bytes: int, budget: int) -> GateResult:
    return GateResult("model size (bytes)", float(model_bytes), float(budget), "<=", model_bytes <= budget)


def latency_gate(predictor: Predictor, records: list[dict[str, Any]], budget_ms: float) -> GateResult:
    """p99 of single-record ``predict`` (validation, feature SQL, ONNX) over ``records``."""
    for record in records[:20]:  # warm-up: plans, allocations, caches
        predictor.predict([record])
    timings = []
    for record in records:
        started = time.perf_counter()
        predictor.predict([record])
        timings.append((time.perf_counter() - started) * 1000)
    p99 = float(np.percentile(timings, 99))
    return GateResult("latency p99 single record (ms)", p99, budget_ms, "<=", p99 <= budget_ms,
                      f"{len(timings)} predictions on the {predictor.feature_path} path, "
                      f"p50 {np.percentile(timings, 50):.3f} ms")


def regression_gate(task: str, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None,
                    tolerance: float, classes: np.ndarray | None, threshold: float, champion_id: str | None,
                    champion_error: str | None = None) -> GateResult:
    """Candidate vs champion on the same rows, by the task's primary metric."""
    metric = PRIMARY_METRIC[task]
    name = f"no regression vs champion ({metric})"
    cand = task_metrics(task, y, candidate, classes=classes, threshold=threshold)[metric]
    if champion_id is None:
        return GateResult(name, cand, None, "", True, "no champion yet: this is the first model")
    if champion is None:
        return GateResult(name, cand, None, "", False,
                          f"champion {champion_id[:12]} could not be scored on this holdout ({champion_error}); "
                          "promote manually with `python orchestrate.py promote <id> --reason ...` if intended")
    champ = task_metrics(task, y, champion, classes=classes, threshold=threshold)[metric]
    cmp = _bound(metric)
    bound = champ + tolerance if cmp == "<=" else champ - tolerance
    return GateResult(name, cand, bound, cmp, _meets(cand, bound, cmp),
                      f"champion {champion_id[:12]} scores {champ:.4f} on the same {len(y)} rows")


def report_table(results: list[GateResult]) -> str:
    """The gate report as a fixed-width table."""
    width = max([len(r.gate) for r in results] + [4])
    lines = [f"{'gate':<{width}}  {'value':>12}  {'':2}  {'threshold':>12}  result  detail"]
    for r in results:
        value = "-" if r.value is None else f"{r.value:.6g}"
        threshold = "-" if r.threshold is None else f"{r.threshold:.6g}"
        verdict = "PASS" if r.passed else "FAIL" if r.blocking else "OFF"
        lines.append(f"{r.gate:<{width}}  {value:>12}  {r.comparison:2}  {threshold:>12}  {verdict:<6}  {r.detail}")
    return "\n".join(lines)
