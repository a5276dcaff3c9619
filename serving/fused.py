"""Run a fused model: one ONNX graph that computes the features from raw fields and scores them.

The graph (compiled from the bundle's feature SQL by ``training.fused``) takes one input per raw
field it uses. SQL NULL travels in-band: NaN for doubles and timestamps (seconds since the
epoch), ``INT64_NULL`` for integers and ``STRING_NULL`` for strings, which request validation
guarantees no real value can be. Any ONNX Runtime can run the same file with the same encoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc

from serving.bundle import InputField

INT64_NULL = np.iinfo(np.int64).min
STRING_NULL = "\0"
FEATURES_OUTPUT = "features"


def encode_inputs(request: pa.Table, inputs: Sequence[InputField]) -> dict[str, np.ndarray]:
    """The fused graph's feeds for a validated request table."""
    feeds: dict[str, np.ndarray] = {}
    for field in inputs:
        column = request.column(field.name)
        if field.type == "string":
            feeds[field.name] = np.asarray(pc.fill_null(column, STRING_NULL).to_numpy(zero_copy_only=False), dtype=object)
        elif field.type == "timestamp":
            micros = column.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            seconds = micros.astype(np.float64) / 1e6  # as DuckDB's epoch(): microseconds / 1e6
            feeds[field.name] = np.where(column.is_null().to_numpy(zero_copy_only=False), np.nan, seconds)
        elif field.type == "integer":
            feeds[field.name] = pc.fill_null(column, INT64_NULL).to_numpy(zero_copy_only=False).astype(np.int64)
        elif field.type == "double":
            feeds[field.name] = column.to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN
        else:
            feeds[field.name] = column.to_numpy(zero_copy_only=False).astype(np.bool_)
    return feeds


class FusedRunner:
    """ONNX Runtime session over a fused model. Thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, session: ort.InferenceSession, inputs: Sequence[InputField]) -> None:
        self._session = session
        self._inputs = tuple(inputs)
        names = [o.name for o in session.get_outputs()]
        if FEATURES_OUTPUT not in names:
            raise ValueError(f"fused model has no {FEATURES_OUTPUT!r} output (outputs: {names})")
        self._outputs = [FEATURES_OUTPUT, names[-1]]

    def run(self, request: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(features float32 [N, F], the model's last output) for a validated request table."""
        features, output = self._session.run(self._outputs, encode_inputs(request, self._inputs))
        return features, np.asarray(output)
