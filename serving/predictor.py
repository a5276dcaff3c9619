"""``Predictor``: score raw records in-process from a model bundle or a registry's champion."""

from __future__ import annotations

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
from serving.entity_state import EntityState, Gathered
from serving.fused import FusedRunner
from serving.store import OnlineStore, RecordOutcome, open_store
from serving.registry import resolve_bundle_path
from serving.onnx_scan import check_no_external_data
from serving.request import Request
from serving.schema import arrow_to_request_table, pandas_to_request_table, records_to_request


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
    recorded: RecordOutcome | None = None
    """What writing the records into the online store did (None: not recorded, or no entity state)."""
    features: np.ndarray | None = None
    """The float32 feature matrix the model scored (model order), as logged and monitored."""
    fallback_rows: int = 0
    """Records the fused graph marked unsure, which the SQL path scored."""

    def slice(self, start: int, end: int) -> Predictions:
        """The predictions of rows ``start:end``."""
        return Predictions(self.model_id, self.task, self.scores[start:end],
                           None if self.labels is None else self.labels[start:end], self.classes, self.recorded,
                           None if self.features is None else self.features[start:end], self.fallback_rows)

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


class ModelScorer:
    """The bundle's model alone: a float32 feature matrix in, the task's scores out. Thread-safe."""

    def __init__(self, bundle: Bundle) -> None:
        self.task = bundle.manifest.task
        self._session = _session(bundle.model_bytes, str(bundle.path))
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] not in (len(bundle.manifest.feature_names), None, "None"):
            raise BundleError(
                f"{bundle.path}: model.onnx takes {[(i.name, i.shape) for i in inputs]}, "
                f"but the manifest lists {len(bundle.manifest.feature_names)} features"
            )
        self._input_name = inputs[0].name
        self._output_name = self._session.get_outputs()[-1].name

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """The task's scores (see ``Predictions.scores``) for a float32 feature matrix."""
        return self.task_scores(np.asarray(self._session.run([self._output_name], {self._input_name: matrix})[0]))

    def task_scores(self, output: np.ndarray) -> np.ndarray:
        """The model's last output as ``Predictions.scores``."""
        if self.task == "binary":
            return output[:, 1]
        return output.reshape(-1) if self.task == "regression" else output


def default_store_url(bundle_path: Path) -> str:
    """The embedded store beside a registry: ``<artifacts>/online_store`` for a bundle under
    ``<artifacts>/registry/bundles/<id>``, where the pipeline's materialize stage writes it."""
    return f"embedded:{Path(bundle_path).resolve().parent.parent.parent / 'online_store'}"


class Predictor:
    """Embeddable scorer: raw records in, scores out. Thread-safe."""

    def __init__(self, bundle: Bundle, options: FeatureEngineOptions = FeatureEngineOptions(),
                 path: str = "auto", store: OnlineStore | str | None = None, record: bool = True) -> None:
        """``path``: ``auto`` (the fused model when it verified, else SQL), ``sql`` or ``fused``.

        ``store``: the online store of entity events (``serving.store.open_store`` or its URL),
        for bundles that read entity state; by default the embedded store beside the registry.
        ``record``: whether scored records are written to it (write-through), unless a call says."""
        if path not in FEATURE_PATHS:
            raise ValueError(f"path must be one of {FEATURE_PATHS}, got {path!r}")
        if path == "fused" and not bundle.fused_verified:
            reason = bundle.manifest.fused_refused or "its fused parity gate has not passed"
            raise BundleError(f"{bundle.path}: no verified fused model ({reason}); use path='sql' or 'auto'")
        self.bundle = bundle
        self.record = record
        self._state: EntityState | None = None
        self._owns_store = False
        if bundle.manifest.entity_state:
            self._owns_store = store is None or isinstance(store, str)
            opened = open_store(store or default_store_url(bundle.path)) if self._owns_store else store
            self._state = EntityState(bundle.manifest.entity_state, bundle.manifest.input_schema, opened)  # type: ignore[arg-type]
        self._engine = FeatureEngine.for_bundle(bundle, options)
        self._model = ModelScorer(bundle)
        self._fused: FusedRunner | None = None
        if path != "sql" and bundle.fused_verified and bundle.fused_bytes and bundle.manifest.fused:
            inputs = {f.name: f for f in bundle.manifest.input_schema}
            self._fused = FusedRunner(_session(bundle.fused_bytes, f"{bundle.path}/fused.onnx"),
                                      [inputs[n] for n in bundle.manifest.fused["inputs"]],
                                      tuple(bundle.manifest.fused.get("event_inputs", ())))

    @classmethod
    def load(cls, source: str | Path, options: FeatureEngineOptions = FeatureEngineOptions(),
             path: str = "auto", store: OnlineStore | str | None = None, record: bool = True) -> Predictor:
        """Load a bundle directory, or the champion of a registry directory."""
        return cls(load_bundle(resolve_bundle_path(Path(source))), options, path, store, record)

    @property
    def store(self) -> OnlineStore | None:
        """The online store entity state is read from (None for bundles without entity state)."""
        return None if self._state is None else self._state.store

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

    def request(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> Request:
        """Validate records (list of dicts, pandas DataFrame or Arrow table) into a request."""
        fields = self.manifest.input_schema
        if isinstance(records, pa.Table):
            return Request.of_table(arrow_to_request_table(records, fields))
        if hasattr(records, "to_dict") and hasattr(records, "columns"):  # pandas, without importing it
            return Request.of_table(pandas_to_request_table(records, fields))
        if isinstance(records, Mapping):
            records = [records]
        return records_to_request(records, fields)

    def request_table(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """``request`` as the request table (``serving.schema``)."""
        return self.request(records).table

    def features(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any) -> pa.Table:
        """The feature rows the SQL path computes for ``records`` (for parity checks and debugging);
        reads entity state, records nothing."""
        request = self.request(records)
        gathered = self._state.gather(request) if self._state else []
        return self._engine.features_table(request.table, self._state.tables(request, gathered) if self._state else None)

    def score_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """The task's scores (see ``Predictions.scores``) for an already-computed float32 feature matrix."""
        return self._model.scores(matrix)

    def predict(self, records: Sequence[Mapping[str, Any]] | pa.Table | Any, record: bool | None = None) -> Predictions:
        """Validate, compute features (entity state from the store), score, and record the
        records as events in the store unless ``record`` (default: the predictor's) says not to."""
        return self.predict_request(self.request(records), record)

    def predict_request(self, request: Request | pa.Table, record: bool | None = None) -> Predictions:
        """Score a request already built by ``request`` (or a request table, ``serving.schema``)."""
        if isinstance(request, pa.Table):
            request = Request.of_table(request)
        if self._state is not None and (distinct := self._state.distinct(request)) is not None:
            rows, inverse = distinct  # an event sent twice is scored once, as one event
            once = self.predict_request(request.take(rows), record)
            return Predictions(once.model_id, once.task, once.scores[inverse],
                               None if once.labels is None else once.labels[inverse], once.classes, once.recorded,
                               None if once.features is None else once.features[inverse], once.fallback_rows)
        gathered = self._state.gather(request) if self._state else []
        fallback = 0
        if self._fused is not None:
            feeds = self._state.feeds(gathered, self._fused.event_inputs) if self._state else {}
            features, output, unsure = self._fused.run(request, feeds)
            scores = self._model.task_scores(output)
            if unsure.any():  # rows the graph cannot answer exactly as DuckDB: the SQL path scores them
                rows = np.flatnonzero(unsure)
                fallback = len(rows)
                scores, features = scores.copy(), features.copy()
                matrix = self._sql_matrix(request.take(rows), request, gathered)
                scores[rows], features[rows] = self.score_matrix(matrix), matrix
        else:
            features = self._sql_matrix(request, request, gathered)
            scores = self.score_matrix(features)
        outcome = None
        if self._state is not None and (self.record if record is None else record):
            outcome = self._state.record(gathered)
        task, classes = self.manifest.task, self.manifest.classes
        if task == "binary":
            labels: np.ndarray | None = (scores >= self.manifest.threshold).astype(np.int8)
        elif task == "multiclass":
            labels = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
        else:
            labels = None
        return Predictions(self.model_id, task, scores, labels, classes if task == "multiclass" else None, outcome,
                           features, fallback)

    def _sql_matrix(self, rows: Request, request: Request, gathered: list[Gathered]) -> np.ndarray:
        """SQL-path features of ``rows`` (all of ``request`` or some of them); every record of the
        request is among the events, since each one is state for the later ones."""
        relations = self._state.tables(request, gathered) if self._state else None
        return self._engine.feature_matrix(self._engine.features_table(rows.table, relations))

    def close(self) -> None:
        """Release the feature database and the store. Call only once no thread is still predicting."""
        self._engine.close()
        if self._state is not None and self._owns_store:
            self._state.store.close()
