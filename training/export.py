"""Export to ONNX with skl2onnx and prove the export is faithful.

Precision choice: the model takes float32 features (what ONNX Runtime's tree operators support
on every runtime). Training uses float32-valued features too and split thresholds are snapped
to float32 (see ``training.model.snap_thresholds_to_float32``), so ONNX takes the same branches
as scikit-learn: labels are identical and probabilities differ only by float32 summation of leaf
values, bounded by ``PROBABILITY_ATOL``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin

from training.errors import ExportError
from training.model import predict_scores

PROBABILITY_ATOL = 1e-5
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "features"


@dataclass(frozen=True)
class ExportParity:
    """How ONNX Runtime agrees with scikit-learn on the checked rows."""

    rows: int
    max_abs_probability_diff: float
    label_mismatches: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.label_mismatches == 0 and self.max_abs_probability_diff <= self.tolerance


def export_onnx(model: ClassifierMixin, n_features: int) -> bytes:
    try:
        onx = to_onnx(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=TARGET_OPSET,
            options={id(model): {"zipmap": False}},
        )
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        raise ExportError(f"skl2onnx could not convert {type(model).__name__}: {exc}") from exc
    onx.doc_string = ""
    return onx.SerializeToString()


def onnx_scores(onnx_bytes: bytes, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {INPUT_NAME: X.astype(np.float32)})
    return np.asarray(labels), np.asarray(probabilities)[:, 1]


def check_export_parity(model: ClassifierMixin, onnx_bytes: bytes, X: np.ndarray,
                        tolerance: float = PROBABILITY_ATOL) -> ExportParity:
    onnx_labels, onnx_probs = onnx_scores(onnx_bytes, X)
    sk_probs = predict_scores(model, X)
    sk_labels = model.predict(X.astype(np.float64))
    return ExportParity(
        rows=len(X),
        max_abs_probability_diff=float(np.max(np.abs(onnx_probs - sk_probs))) if len(X) else 0.0,
        label_mismatches=int(np.sum(onnx_labels != sk_labels)),
        tolerance=tolerance,
    )
