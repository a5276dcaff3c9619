"""Seeded random hyperparameter search within a time budget, scored on the validation split."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.data import Dataset
from training.metrics import PRIMARY_METRIC, is_better, task_metrics
from training.model import build_model, fit, predict_output


@dataclass(frozen=True)
class SearchResult:
    """What the search tried and chose."""

    best_params: dict[str, Any]
    """Base parameters updated with the best trial's draw."""
    metric: str
    """Validation metric compared (see ``training.metrics.PRIMARY_METRIC``)."""
    trials: list[dict[str, Any]] = field(default_factory=list)
    """Each trial's parameters, validation metric and seconds, in order."""
    stopped_by: str = "max_trials"
    """``max_trials`` or ``time_budget``."""


def random_search(data: Dataset, task: str, family: str, base_params: dict[str, Any], space: dict[str, list[Any]],
                  *, seed: int, max_trials: int, time_budget_seconds: float) -> SearchResult:
    rng = np.random.default_rng(seed)
    metric = PRIMARY_METRIC[task]
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None
    stopped_by = "max_trials"
    for _ in range(max_trials):
        if time.perf_counter() - started > time_budget_seconds:
            stopped_by = "time_budget"
            break
        draw = {name: values[int(rng.integers(len(values)))] for name, values in sorted(space.items())}
        params = {**base_params, **draw}
        t0 = time.perf_counter()
        model = fit(build_model(family, params, seed, task), data.X[data.train], data.y[data.train])
        value = task_metrics(task, data.y[data.valid], predict_output(model, data.X[data.valid]),
                             classes=data.classes)[metric]
        trials.append({"params": draw, metric: value, "seconds": round(time.perf_counter() - t0, 3)})
        if best is None or is_better(metric, value, best[0]):
            best = (value, params)
    assert best is not None, "max_trials >= 1 is validated in the config"
    return SearchResult(best[1], metric, trials, stopped_by)
