"""One training run: optional search, fit, ONNX export with a faithfulness check, metrics."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from training.data import Dataset
from training.errors import ExportError
from training.export import ExportParity, check_export_parity, export_onnx
from training.metrics import choose_threshold, task_metrics
from training.model import build_model, fit, predict_output
from training.search import SearchResult, random_search

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TrainingOptions:
    """What to train."""

    task: str
    """binary, multiclass or regression."""
    family: str
    """Model family name."""
    params: dict[str, Any]
    """Hyperparameters (the search's best draw replaces those it searched)."""
    seed: int
    """Seed of the model and the search."""
    search_space: dict[str, list[Any]] = field(default_factory=dict)
    """Empty: no search."""
    search_max_trials: int = 20
    search_time_budget_seconds: float = 60.0


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model, its ONNX export and everything measured about it."""

    model: BaseEstimator
    onnx: bytes
    params: dict[str, Any]
    """Parameters of the final fit."""
    threshold: float
    """Binary decision threshold chosen on validation (0.5 unused for other tasks)."""
    classes: list[Any] | None
    metrics: dict[str, dict[str, float]]
    """Split -> metric -> value, plus ``export_parity``."""
    export_parity: ExportParity
    search: SearchResult | None
    durations: dict[str, float]
    """Seconds spent in search, fit, export and evaluation."""

    @property
    def onnx_sha256(self) -> str:
        return hashlib.sha256(self.onnx).hexdigest()


def _masks(data: Dataset) -> dict[str, np.ndarray]:
    return dict(zip(SPLITS, (data.train, data.valid, data.test)))


def train(data: Dataset, opts: TrainingOptions) -> TrainedModel:
    durations: dict[str, float] = {}
    started = time.perf_counter()
    search = None
    params = dict(opts.params)
    if opts.search_space:
        search = random_search(data, opts.task, opts.family, params, opts.search_space, seed=opts.seed,
                               max_trials=opts.search_max_trials, time_budget_seconds=opts.search_time_budget_seconds)
        params = search.best_params
    durations["search"] = time.perf_counter() - started

    started = time.perf_counter()
    model = fit(build_model(opts.family, params, opts.seed, opts.task), data.X[data.train], data.y[data.train])
    durations["fit"] = time.perf_counter() - started

    started = time.perf_counter()
    onnx = export_onnx(model, data.X.shape[1])
    parity = check_export_parity(model, onnx, data.X[data.test])
    durations["export"] = time.perf_counter() - started
    if not parity.passed:
        raise ExportError(
            f"ONNX export is not faithful on the test split ({parity.rows} rows): {parity.label_mismatches} label "
            f"mismatches, max difference {parity.max_abs_diff:.2e} (tolerance {parity.tolerance:.0e})"
        )

    started = time.perf_counter()
    masks = _masks(data)
    outputs = {name: predict_output(model, data.X[mask]) for name, mask in masks.items()}
    threshold = choose_threshold(data.y[data.valid], outputs["validation"][:, 1]) if opts.task == "binary" else 0.5
    metrics: dict[str, Any] = {
        name: task_metrics(opts.task, data.y[mask], outputs[name], classes=data.classes, threshold=threshold)
        for name, mask in masks.items()
    }
    metrics["export_parity"] = {"rows": parity.rows, "max_abs_diff": parity.max_abs_diff,
                                "label_mismatches": parity.label_mismatches, "tolerance": parity.tolerance}
    durations["evaluate"] = time.perf_counter() - started
    classes = [c.item() if hasattr(c, "item") else c for c in data.classes] if data.classes is not None else None
    return TrainedModel(model, onnx, params, threshold, classes, metrics, parity, search, durations)
