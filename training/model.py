"""Model families, by name, and fitting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier

from training.errors import TrainingDataError


def _hist_gradient_boosting(params: dict[str, Any], seed: int) -> ClassifierMixin:
    if params.get("categorical_features") not in (None, "from_dtype"):
        # skl2onnx cannot reproduce native categorical splits faithfully; encode in dbt instead.
        raise TrainingDataError(
            "hist_gradient_boosting: native categorical_features do not convert to ONNX faithfully; "
            "encode categories in dbt (as the *_index features do) and drop the parameter"
        )
    return HistGradientBoostingClassifier(**{**params, "categorical_features": None}, random_state=seed)


MODEL_FAMILIES: dict[str, Callable[[dict[str, Any], int], ClassifierMixin]] = {
    "hist_gradient_boosting": _hist_gradient_boosting,
}


def build_model(family: str, params: dict[str, Any], seed: int) -> ClassifierMixin:
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(MODEL_FAMILIES)}")
    try:
        return MODEL_FAMILIES[family](dict(params), seed)
    except TypeError as exc:
        raise ValueError(f"model family {family!r}: bad parameter: {exc}") from exc


def fit(model: ClassifierMixin, X: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    """Fit on float32-valued features (the dtype served), then snap split thresholds to float32."""
    model.fit(X.astype(np.float64), y)
    snap_thresholds_to_float32(model)
    return model


def snap_thresholds_to_float32(model: ClassifierMixin) -> None:
    """Replace each split threshold t by the largest float32 <= t.

    For float32 inputs x, ``x <= t`` and ``x <= snapped(t)`` are the same decision, so the
    scikit-learn model's predictions do not change; but the snapped value survives ONNX's float32
    thresholds exactly, so ONNX Runtime takes the same branch as scikit-learn on every row.
    """
    for predictors in getattr(model, "_predictors", []):
        for predictor in predictors:
            thresholds = predictor.nodes["num_threshold"]
            as32 = thresholds.astype(np.float32)
            too_high = as32.astype(np.float64) > thresholds
            as32[too_high] = np.nextafter(as32[too_high], np.float32(-np.inf))
            predictor.nodes["num_threshold"] = as32.astype(np.float64)


def predict_scores(model: ClassifierMixin, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X.astype(np.float64))[:, 1]
