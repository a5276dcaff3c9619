"""Export to ONNX with skl2onnx and prove the export is faithful.

Precision choice: the model takes float32 features (what ONNX Runtime's tree operators support
on every runtime). Training uses float32-valued features too and tree split thresholds are
snapped to float32 (see ``training.model.snap_thresholds_to_float32``), so ONNX takes the same
branches as scikit-learn: class labels are identical and probabilities (or regression outputs)
differ only by float32 arithmetic, bounded by ``PROBABILITY_ATOL`` (``REGRESSION_RTOL`` relative
to the prediction's magnitude for regression).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from training.errors import ExportError
from training.model import predict_output

PROBABILITY_ATOL = 1e-5
REGRESSION_RTOL = 1e-5
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "features"


@dataclass(frozen=True)
class ExportParity:
    """How ONNX Runtime agrees with scikit-learn on the checked rows."""

    rows: int
    max_abs_diff: float
    """Largest |ONNX - sklearn| probability (classification) or relative prediction difference."""
    label_mismatches: int
    """Rows whose predicted class differs (always 0 for regression)."""
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.label_mismatches == 0 and self.max_abs_diff <= self.tolerance


def _final_estimator(model: BaseEstimator) -> BaseEstimator:
    return model[-1] if isinstance(model, Pipeline) else model


def export_onnx(model: BaseEstimator, n_features: int) -> bytes:
    options = {id(_final_estimator(model)): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    try:
        with warnings.catch_warnings():
            # skl2onnx's tree converter, not ours: it passes `False` for a leaf's
            # nodes_missing_value_tracks_true; protobuf < 7 (pinned in pyproject.toml) takes it as 0.
            warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning)
            onx = to_onnx(model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                          target_opset=TARGET_OPSET, options=options)
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        raise ExportError(f"skl2onnx could not convert {type(_final_estimator(model)).__name__}: {exc}") from exc
    onx.doc_string = ""
    return onx.SerializeToString()


def onnx_output(onnx_bytes: bytes, X: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(labels, probabilities) for a classifier; (None, predictions) for a regressor."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: X.astype(np.float32)})
    if len(outputs) == 2:
        return np.asarray(outputs[0]), np.asarray(outputs[1])
    return None, np.asarray(outputs[0]).reshape(-1)


def check_export_parity(model: BaseEstimator, onnx_bytes: bytes, X: np.ndarray) -> ExportParity:
    onnx_labels, onnx_values = onnx_output(onnx_bytes, X)
    sk_values = predict_output(model, X)
    if onnx_labels is None:
        scale = np.maximum(1.0, np.abs(sk_values))
        diff = np.abs(onnx_values - sk_values) / scale
        return ExportParity(len(X), float(diff.max()) if len(X) else 0.0, 0, REGRESSION_RTOL)
    sk_labels = model.predict(X.astype(np.float64))
    return ExportParity(
        rows=len(X),
        max_abs_diff=float(np.max(np.abs(onnx_values - sk_values))) if len(X) else 0.0,
        label_mismatches=int(np.sum(onnx_labels != sk_labels)),
        tolerance=PROBABILITY_ATOL,
    )
