"""Run a fused model: one ONNX graph that computes the features from raw fields and scores them.

The graph (compiled from the bundle's feature SQL by ``training.fused``) takes one input per raw
field it uses. SQL NULL travels in-band: NaN for doubles, ``INT64_NULL`` for integers and
timestamps (int64 microseconds since 1970-01-01, UTC) and ``STRING_NULL`` for strings, which
request validation guarantees no real value can be. Any ONNX Runtime can run the same file with
the same encoding.

Besides the model's outputs and the feature vector, the graph returns an ``unsure`` mask: rows
where it cannot give DuckDB's answer (DuckDB would raise an error there, or a number is past
what float64 holds exactly). The Predictor scores those rows on the SQL path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc

from serving.bundle import InputField
from serving.request import Request

INT64_NULL = np.iinfo(np.int64).min
STRING_NULL = "\0"
FEATURES_OUTPUT = "features"
UNSURE_OUTPUT = "unsure"


SMALL_REQUEST_ROWS = 32
"""Up to this many rows, feeds are built from Python values: Arrow's compute kernels have a
fixed cost per call that dominates a single record; above it they are the faster way."""
_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)


def encode_inputs(request: Request | pa.Table, inputs: Sequence[InputField]) -> dict[str, np.ndarray]:
    """The fused graph's feeds for a validated request (or request table)."""
    if isinstance(request, pa.Table):
        request = Request.of_table(request)
    if request.has_values or request.num_rows <= SMALL_REQUEST_ROWS:
        return {field.name: _encode_small(request.values(field.name), field) for field in inputs}
    table = request.table
    return {field.name: _encode_column(table.column(field.name), field) for field in inputs}


def _encode_column(column: pa.ChunkedArray, field: InputField) -> np.ndarray:
    if field.type == "string":
        return np.asarray(pc.fill_null(column, STRING_NULL).to_numpy(zero_copy_only=False), dtype=object)
    if field.type == "timestamp":
        micros = column.cast(pa.timestamp("us")).cast(pa.int64())
        return pc.fill_null(micros, INT64_NULL).to_numpy(zero_copy_only=False).astype(np.int64)
    if field.type == "integer":
        return pc.fill_null(column, INT64_NULL).to_numpy(zero_copy_only=False).astype(np.int64)
    if field.type == "double":
        return column.to_numpy(zero_copy_only=False).astype(np.float64)  # null -> NaN
    return column.to_numpy(zero_copy_only=False).astype(np.bool_)


def _encode_small(values: list[Any], field: InputField) -> np.ndarray:
    """``_encode_column`` for a few rows, value by value (same encoding)."""
    if field.type == "string":
        return np.array([STRING_NULL if v is None else v for v in values], dtype=object)
    if field.type == "timestamp":  # naive UTC datetimes at microsecond precision, as the table holds them
        return np.array([INT64_NULL if v is None else (v - _EPOCH) // _MICROSECOND for v in values], dtype=np.int64)
    if field.type == "integer":
        return np.array([INT64_NULL if v is None else v for v in values], dtype=np.int64)
    if field.type == "double":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=np.bool_)


class FusedRunner:
    """ONNX Runtime session over a fused model. Thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, session: ort.InferenceSession, inputs: Sequence[InputField],
                 event_inputs: Sequence[str] = ()) -> None:
        self._session = session
        self._inputs = tuple(inputs)
        self.event_inputs = tuple(event_inputs)
        """Inputs holding each row's entity events ([N, K], see ``serving.entity_state``)."""
        names = [o.name for o in session.get_outputs()]
        missing = [n for n in (FEATURES_OUTPUT, UNSURE_OUTPUT) if n not in names]
        if missing:
            raise ValueError(f"fused model has no {missing} output(s) (outputs: {names}); rebuild the bundle")
        self._outputs = [FEATURES_OUTPUT, UNSURE_OUTPUT, names[-1]]

    def run(self, request: Request, events: dict[str, np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features float32 [N, F], the model's last output, unsure bool [N]) for a validated
        request and its entity events."""
        feeds = encode_inputs(request, self._inputs)
        if events:
            feeds.update(events)
        features, unsure, output = self._session.run(self._outputs, feeds)
        return features, np.asarray(output), np.asarray(unsure, dtype=np.bool_)
