"""``Predictor``: score raw records in-process from a model bundle or a registry's champion."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pyarrow as pa

from serving.bundle import Bundle, BundleManifest, load_bundle
from serving.errors import BundleError
from serving.features import FeatureEngine, FeatureEngineOptions
from serving.fused import FusedRunner
from serving.registry import resolve_bundle_path
from serving.onnx_scan import check_no_external_data
from serving.schema import arrow_to_request_table, pandas_to_request_table, records_to_table


FEATURE_PATHS = ("auto", "sql", "fused")


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

    def slice(self, start: int, end: int) -> Predictions:
        """The predictions of rows ``start:end``."""
        return Predictions(self.model_id, self.task, self.scores[start:end],
                           None if self.labels is None else self.labels[start:end], self.classes)

    def to_records(self) -> list[dict[str, Any]]:
        if self.task == "regression":
            return [{"prediction": v} for v in self.scores.tolist()]
        if self.task == "multiclass":
            assert self.labels is not None and self.classes is not None
            return [{"label": _plain(l), "probabilities": {str(c): p for c, p in zip(self.classes, row)}}
                    for l, row in zip(self.labels, self.scores.tolist())]
        assert self.labels is not None
        return [{"score": s, "label": l} for s, l in zip(self.scores.tolist(), self.labels.tolist())]

    def to_json(self) -> bytes:
        """``to_records()`` as a JSON array; binary outputs are written from their arrays in one join,
        with no dict per record. Raises ``ValueError`` on a non-finite score, as JSON has none.
        Written once: the prediction log and the answer both carry it."""
        return self._json

    @functools.cached_property
    def _json(self) -> bytes:
        if not np.isfinite(self.scores).all():
            raise ValueError("a score is NaN or infinite, which JSON cannot carry")
        n = len(self.scores)
        if self.task != "binary" or self.labels is None or n == 0:
            records = self.to_records()
            try:
                return orjson.dumps(records)
            except orjson.JSONEncodeError:  # a class label orjson does not write (an int past 64 bits)
                return json.dumps(records, separators=(",", ":")).encode()
        parts = [b""] * (5 * n)
        parts[0::5] = [b'{"score":'] * n
        parts[1::5] = json_numbers(self.scores.tolist())
        parts[2::5] = [b',"label":'] * n
        parts[3::5] = json_numbers(self.labels.tolist())
        parts[4::5] = [b"},"] * n
        return b"[" + b"".join(parts)[:-1] + b"]"


def json_numbers(values: list[Any]) -> list[bytes]:
    """Each number's JSON text, from one orjson call."""
    return orjson.dumps(values).strip(b"[]").split(b",")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


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

    def __init__(self, bundle: Bundle, options: FeatureEngineOptions = FeatureEngineOptions(),
                 path: str = "auto") -> None:
        """``path``: ``auto`` (the fused model when it passed its parity gate, else SQL), ``sql`` or ``fused``."""
        if path not in FEATURE_PATHS:
            raise ValueError(f"path must be one of {FEATURE_PATHS}, got {path!r}")
        if path == "fused" and not bundle.fused_verified:
            reason = bundle.manifest.fused_refused or "its fused parity gate has not passed"
            raise BundleError(f"{bundle.path}: no verified fused model ({reason}); use path='sql' or 'auto'")
        self.bundle = bundle
        self._engine = FeatureEngine(bundle.serving_sql, bundle.tables, bundle.manifest.feature_names, options)
        self._session = _session(bundle.model_bytes, str(bundle.path))
        self._fused: FusedRunner | None = None
        if path != "sql" and bundle.fused_verified and bundle.fused_bytes and bundle.manifest.fused:
            inputs = {f.name: f for f in bundle.manifest.input_schema}
            self._fused = FusedRunner(_session(bundle.fused_bytes, f"{bundle.path}/fused.onnx"),
                                      [inputs[n] for n in bundle.manifest.fused["inputs"]])
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] not in (len(bundle.manifest.feature_names), None, "None"):
            raise BundleError(
                f"{bundle.path}: model.onnx takes {[(i.name, i.shape) for i in inputs]}, "
                f"but the manifest lists {len(bundle.manifest.feature_names)} features"
            )
        self._input_name = inputs[0].name
        self._output_name = self._session.get_outputs()[-1].name

    @classmethod
    def load(cls, source: str | Path, options: FeatureEngineOptions = FeatureEngineOptions(),
             path: str = "auto") -> Predictor:
        """Load a bundle directory, or the champion of a registry directory."""
        return cls(load_bundle(resolve_bundle_path(Path(source))), options, path)

    @property
    def feature_path(self) -> str:
        """``fused`` or ``sql``: how this predictor computes features."""
        return "fused" if self._fused is not None else "sql"

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
            return pandas_to_request_table(records, fields)
        if isinstance(records, Mapping):
            records = [records]
        return records_to_table(records, fields)

    def features(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """The feature rows serving computes for ``records`` (for parity checks and debugging)."""
        return self._engine.features_table(self.request_table(records))

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """The task's scores (see ``Predictions.scores``) for an already-computed float32 feature matrix."""
        return self._task_scores(np.asarray(self._session.run([self._output_name], {self._input_name: matrix})[0]))

    def _task_scores(self, output: np.ndarray) -> np.ndarray:
        if self.manifest.task == "binary":
            return output[:, 1]
        return output.reshape(-1) if self.manifest.task == "regression" else output

    def predict(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> Predictions:
        """Validate, compute features with the bundle's SQL, and score."""
        return self.predict_request(self.request_table(records))

    def predict_request(self, request: pa.Table) -> Predictions:
        """Score a request table already built by ``request_table`` (or by ``serving.schema``)."""
        if self._fused is not None:
            _, output, unsure = self._fused.run(request)
            scores = self._task_scores(output)
            if unsure.any():  # rows the graph cannot answer exactly as DuckDB: the SQL path scores them
                rows = np.flatnonzero(unsure)
                scores = scores.copy()
                scores[rows] = self._sql_scores(request.take(rows))
        else:
            scores = self._sql_scores(request)
        task, classes = self.manifest.task, self.manifest.classes
        if task == "binary":
            labels: np.ndarray | None = (scores >= self.manifest.threshold).astype(np.int8)
        elif task == "multiclass":
            labels = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
        else:
            labels = None
        return Predictions(self.model_id, task, scores, labels, classes if task == "multiclass" else None)

    def _sql_scores(self, request: pa.Table) -> np.ndarray:
        return self.score_matrix(self._engine.feature_matrix(self._engine.features_table(request)))

    def close(self) -> None:
        """Release the feature database. Call only once no thread is still predicting."""
        self._engine.close()
