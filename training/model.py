"""Model families, by task and name, and fitting.

Every family takes float32-valued features with NaN for SQL nulls. Tree ensembles with native
NaN support (HistGradientBoosting) see the NaN; the others get a median imputer in front, which
skl2onnx converts faithfully. Linear models also get a standard scaler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from training.errors import TrainingDataError

CLASSIFICATION = ("binary", "multiclass")


def _hist_gradient_boosting(task: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    if params.get("categorical_features") not in (None, "from_dtype"):
        # skl2onnx cannot reproduce native categorical splits faithfully; encode in dbt instead.
        raise TrainingDataError(
            "hist_gradient_boosting: native categorical_features do not convert to ONNX faithfully; "
            "encode categories in dbt (as the *_index features do) and drop the parameter"
        )
    cls = HistGradientBoostingClassifier if task in CLASSIFICATION else HistGradientBoostingRegressor
    return cls(**{**params, "categorical_features": None}, random_state=seed)


def _random_forest(task: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    cls = RandomForestClassifier if task in CLASSIFICATION else RandomForestRegressor
    return make_pipeline(SimpleImputer(strategy="median"), cls(**{"n_jobs": 1, **params}, random_state=seed))


def _linear(task: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    if task in CLASSIFICATION:
        model: BaseEstimator = LogisticRegression(**{"max_iter": 1000, **params}, random_state=seed)
    else:
        model = Ridge(**params)
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), model)


MODEL_FAMILIES: dict[str, Callable[[str, dict[str, Any], int], BaseEstimator]] = {
    "hist_gradient_boosting": _hist_gradient_boosting,
    "random_forest": _random_forest,
    "linear": _linear,
}


def build_model(family: str, params: dict[str, Any], seed: int, task: str = "binary") -> BaseEstimator:
    """A fresh estimator of ``family`` for ``task``; bad names and parameters are named."""
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(MODEL_FAMILIES)}")
    try:
        # Unknown parameter names fail here; out-of-range values fail at fit with sklearn's message.
        return MODEL_FAMILIES[family](task, dict(params), seed)
    except TypeError as exc:
        raise ValueError(f"model family {family!r}: bad parameter: {exc}") from exc


def fit(model: BaseEstimator, X: np.ndarray, y: np.ndarray) -> BaseEstimator:
    """Fit on float32-valued features (the dtype served), then snap split thresholds to float32."""
    model.fit(X.astype(np.float64), y)
    snap_thresholds_to_float32(model)
    return model


def _snap(thresholds: np.ndarray) -> np.ndarray:
    as32 = thresholds.astype(np.float32)
    too_high = as32.astype(np.float64) > thresholds
    as32[too_high] = np.nextafter(as32[too_high], np.float32(-np.inf))
    return as32.astype(np.float64)


def snap_thresholds_to_float32(model: BaseEstimator) -> None:
    """Replace each tree split threshold t by the largest float32 <= t.

    For float32 inputs x, ``x <= t`` and ``x <= snapped(t)`` are the same decision, so the
    scikit-learn model's predictions do not change; but the snapped value survives ONNX's float32
    thresholds exactly, so ONNX Runtime takes the same branch as scikit-learn on every row.
    """
    estimator = model[-1] if isinstance(model, Pipeline) else model
    for predictors in getattr(estimator, "_predictors", []):  # HistGradientBoosting
        for predictor in predictors:
            predictor.nodes["num_threshold"] = _snap(predictor.nodes["num_threshold"])
    for tree in getattr(estimator, "estimators_", []):  # random forests: a view on the tree's nodes
        threshold = tree.tree_.threshold
        threshold[:] = _snap(threshold)


def predict_output(model: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """Class probabilities (classification, n x classes) or predictions (regression, n)."""
    X64 = X.astype(np.float64)
    return model.predict_proba(X64) if hasattr(model, "predict_proba") else model.predict(X64)
