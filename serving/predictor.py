"""``Predictor``: score raw records in-process from a model bundle or a registry's champion."""

from __future__ import annotations

import datetime as dt
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
from serving.schema import arrow_to_request_table, records_to_table


@dataclass(frozen=True)
class Predictions:
    """Model outputs for a batch, in request order."""

    model_id: str
    """Bundle id of the model that produced these outputs."""
    task: str
    """binary, multiclass or regression."""
    scores: np.ndarray
    """Binary: positive-class probability (n,); multiclass: probabilities (n, classes);
    regression: predictions (n,)."""
    labels: np.ndarray | None
    """Binary: 1 where score >= the bundle's threshold; multiclass: the likeliest class; regression: None."""
    classes: list[Any] | None = None
    """Multiclass: class of each probability column."""

    def to_records(self) -> list[dict[str, Any]]:
        if self.task == "regression":
            return [{"prediction": float(v)} for v in self.scores]
        if self.task == "multiclass":
            assert self.labels is not None and self.classes is not None
            return [{"label": _plain(l), "probabilities": {str(c): float(p) for c, p in zip(self.classes, row)}}
                    for l, row in zip(self.labels, self.scores)]
        assert self.labels is not None
        return [{"score": float(s), "label": int(l)} for s, l in zip(self.scores, self.labels)]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _session(model_bytes: bytes) -> ort.InferenceSession:
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
        self._session = _session(bundle.model_bytes)
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

    def snapshot_age_seconds(self, now: dt.datetime | None = None) -> dict[str, float]:
        """Age of each frozen entity snapshot: how stale the entity features served now are."""
        now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return {
            name: (now - dt.datetime.fromisoformat(info["state_at"])).total_seconds()
            for name, info in self.manifest.entity_snapshots.items()
        }

    def request_table(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """Validate records (list of dicts, pandas DataFrame or Arrow table) into a request table."""
        fields = self.manifest.input_schema
        if isinstance(records, pa.Table):
            return arrow_to_request_table(records, fields)
        if hasattr(records, "to_dict") and hasattr(records, "columns"):  # pandas, without importing it
            return arrow_to_request_table(pa.Table.from_pandas(records, preserve_index=False), fields)
        if isinstance(records, Mapping):
            records = [records]
        return records_to_table(records, fields)

    def features(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """The feature rows serving computes for ``records`` (for parity checks and debugging)."""
        return self._engine.features_table(self.request_table(records))

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """The task's scores (see ``Predictions.scores``) for an already-computed float32 feature matrix."""
        output = np.asarray(self._session.run([self._output_name], {self._input_name: matrix})[0])
        if self.manifest.task == "binary":
            return output[:, 1]
        return output.reshape(-1) if self.manifest.task == "regression" else output

    def predict(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> Predictions:
        """Validate, compute features with the bundle's SQL, and score."""
        features = self.features(records)
        scores = self.score_matrix(self._engine.feature_matrix(features))
        task, classes = self.manifest.task, self.manifest.classes
        if task == "binary":
            labels: np.ndarray | None = (scores >= self.manifest.threshold).astype(np.int8)
        elif task == "multiclass":
            labels = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
        else:
            labels = None
        return Predictions(self.model_id, task, scores, labels, classes if task == "multiclass" else None)

    def close(self) -> None:
        self._engine.close()
