"""``Predictor``: score raw records in-process from a model bundle or a registry's champion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from serving.bundle import Bundle, BundleManifest, load_bundle
from serving.errors import BundleError
from serving.features import FeatureEngine, FeatureEngineOptions
from serving.registry import resolve_bundle_path
from serving.onnx_scan import check_no_external_data
from serving.schema import arrow_to_request_table, pandas_to_request_table, records_to_table


@dataclass(frozen=True)
class Predictions:
    """Scores for a batch, in request order."""

    model_id: str
    """Bundle id of the model that produced these scores."""
    scores: np.ndarray
    """Probability of the positive class, float32."""
    labels: np.ndarray
    """1 where score >= the bundle's threshold, else 0."""

    def to_records(self) -> list[dict[str, Any]]:
        return [{"score": s, "label": l} for s, l in zip(self.scores.tolist(), self.labels.tolist())]


def _session(model_bytes: bytes, where: str) -> ort.InferenceSession:
    # Sessions are created from bytes (never a path), in the process that uses them: ONNX Runtime
    # then has no directory to resolve external data against, and no session crosses a fork.
    check_no_external_data(model_bytes, where)
    opts = ort.SessionOptions()
    # Latency first: one request is small, so threads would only contend with the server's.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BundleError(f"model.onnx could not be loaded by ONNX Runtime: {exc}") from exc


class Predictor:
    """Embeddable scorer: raw records in, scores out. Thread-safe."""

    def __init__(self, bundle: Bundle, options: FeatureEngineOptions = FeatureEngineOptions()) -> None:
        self.bundle = bundle
        self._engine = FeatureEngine(bundle.serving_sql, bundle.tables, bundle.manifest.feature_names, options)
        self._session = _session(bundle.model_bytes, str(bundle.path))
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] not in (len(bundle.manifest.feature_names), None, "None"):
            raise BundleError(
                f"{bundle.path}: model.onnx takes {[(i.name, i.shape) for i in inputs]}, "
                f"but the manifest lists {len(bundle.manifest.feature_names)} features"
            )
        self._input_name = inputs[0].name
        self._output_name = self._session.get_outputs()[-1].name

    @classmethod
    def load(cls, source: str | Path, options: FeatureEngineOptions = FeatureEngineOptions()) -> Predictor:
        """Load a bundle directory, or the champion of a registry directory."""
        return cls(load_bundle(resolve_bundle_path(Path(source))), options)

    @property
    def manifest(self) -> BundleManifest:
        return self.bundle.manifest

    @property
    def model_id(self) -> str:
        return self.bundle.manifest.bundle_id

    def request_table(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """Validate records (list of dicts, pandas DataFrame or Arrow table) into a request table."""
        fields = self.manifest.input_schema
        if isinstance(records, pa.Table):
            return arrow_to_request_table(records, fields)
        if hasattr(records, "to_dict") and hasattr(records, "columns"):  # pandas, without importing it
            return pandas_to_request_table(records, fields)
        if isinstance(records, Mapping):
            records = [records]
        return records_to_table(records, fields)

    def features(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """The feature rows serving computes for ``records`` (for parity checks and debugging)."""
        return self._engine.features_table(self.request_table(records))

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class probability for an already-computed float32 feature matrix."""
        probabilities = self._session.run([self._output_name], {self._input_name: matrix})[0]
        return np.asarray(probabilities)[:, 1].astype(np.float32)

    def predict(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> Predictions:
        """Validate, compute features with the bundle's SQL, and score."""
        return self.predict_request(self.request_table(records))

    def predict_request(self, request: pa.Table) -> Predictions:
        """Score a request table already built by ``request_table`` (or by ``serving.schema``)."""
        features = self._engine.features_table(request)
        scores = self.score_matrix(self._engine.feature_matrix(features))
        labels = (scores >= self.manifest.threshold).astype(np.int8)
        return Predictions(self.model_id, scores, labels)

    def close(self) -> None:
        """Release the feature database. Call only once no thread is still predicting."""
        self._engine.close()
