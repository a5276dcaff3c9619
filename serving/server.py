"""HTTP model server: ``serve-model --registry artifacts/registry`` (or ``--bundle DIR``).

Endpoints: ``POST /predict`` (one record, or ``{"records": [...]}``), ``GET /health``,
``GET /ready``, ``GET /metadata``, ``GET /metrics`` (Prometheus text); OpenAPI docs at ``/docs``.
With ``--api-keys FILE`` every route but ``/health`` and ``/ready`` needs a key with its scope
(``serving.auth``, docs/auth.md): ``score`` scores without writing entity state, ``score+record``
also records the event, ``admin`` reads ``/metadata`` and ``/metrics``.
Bad input is a 4xx naming the record and field, never a 500; a 500 means a fault on our side.
Every answered prediction is in the prediction log before the answer leaves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth.guard import SCOPE_KEY, UNCHECKED, Grant, KeyWatcher, RequireKey
from serving.body import TOO_DEEP, json_bytes, nests_too_deep, parse_json
from serving.bundle import InputField
from serving.connections import TIMED_OUT
from serving.errors import FeatureComputationError, InputValidationError
from serving.metrics import CONTENT_TYPE, ServerMetrics
from serving.prediction_log import PredictionLog, PredictionLogOptions, records_json
from serving.predictor import default_store_url
from serving.registry import resolve_bundle_path
from serving.request import Request as ScoringRequest
from serving.store import StoreSchemaError, StoreUnavailable, open_store
from serving.reload import ChampionWatcher, ModelHolder, load_warm
from serving.schema import BatchBodyDecoder
from serving.scoring import BatchingScorer
from serving.workers import MetricsExchange

log = logging.getLogger("serving.server")

ROUTES = frozenset({"/predict", "/health", "/ready", "/metadata", "/metrics", "/openapi.json", "/docs"})
MAX_PROBLEMS_SHOWN = 100
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class ServerSettings:
    """How the server finds its model, what it accepts and where it logs."""

    model_source: Path
    """A bundle directory, or a registry directory whose champion is served (and hot-reloaded)."""
    max_body_bytes: int = 1 << 20
    """Largest request body accepted (413 above); counted while reading, not from Content-Length."""
    max_records: int = 10_000
    """Largest batch accepted (413 above)."""
    prediction_log: PredictionLogOptions = field(default_factory=PredictionLogOptions)
    """Where every served prediction is appended (default ``artifacts/prediction_logs``)."""
    reload_interval_s: float = 2.0
    """How often the registry's champion pointer is checked; 0 turns hot reload off."""
    scoring_threads: int = 2
    """Threads that run the feature SQL and the model (one per core is right); 0 scores in the
    event loop, with no hand-off between threads but one request at a time per process."""
    max_batch_records: int = 1024
    """Queued requests are merged into one scoring batch up to this many records."""
    feature_path: str = "auto"
    """``auto`` (the fused model when its parity gate passed, else the SQL path), ``sql`` or ``fused``."""
    metrics_exchange: Path | None = None
    """Folder where worker processes share their metric counts (set by ``--workers``; see ``serving.workers``)."""
    store: str | None = None
    """The online store of entity state (``embedded:<folder>`` or ``redis://host:port/db``); by default
    the embedded store beside the registry (``<artifacts>/online_store``), where the pipeline loads it."""
    record: bool = True
    """Write every scored record into the online store (write-through); a request whose key has
    only the ``score`` scope is never recorded."""
    api_keys: Path | None = None
    """The API key file (``serving.auth``); None serves every request without a key (``--no-auth``)."""
    api_keys_reload_interval_s: float = 2.0
    """How often the key file is checked for changes; 0 reads it once."""


SETTINGS_ENV = "SERVE_MODEL_SETTINGS"
"""How ``main`` hands the settings to the worker processes it has uvicorn spawn."""


def settings_to_json(settings: ServerSettings) -> str:
    return json.dumps(dataclasses.asdict(settings), default=str)


def settings_from_json(text: str) -> ServerSettings:
    values = json.loads(text)
    log_options = values.pop("prediction_log")
    log_options["directory"] = Path(log_options["directory"])
    exchange = values.pop("metrics_exchange")
    keys = values.pop("api_keys")
    return ServerSettings(model_source=Path(values.pop("model_source")),
                          prediction_log=PredictionLogOptions(**log_options),
                          metrics_exchange=None if exchange is None else Path(exchange),
                          api_keys=None if keys is None else Path(keys), **values)


def worker_app() -> PredictFastPath:
    """The app of one worker process of ``--workers N`` (uvicorn imports and calls this after the spawn)."""
    return create_app(settings_from_json(os.environ[SETTINGS_ENV]))


class _BodyTooLarge(Exception):
    pass


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, so any echoed input (even a lone surrogate) encodes."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def _success_bytes(content: dict[str, Any]) -> bytes:
    """A scored answer's JSON; the standard library's when orjson refuses a value (never NaN here:
    non-finite scores fail at the prediction log, before the answer)."""
    try:
        return orjson.dumps(content)
    except orjson.JSONEncodeError:
        return json_bytes(content)


def _error_body(message: str, problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problem_count"] = len(problems)
        body["problems"] = problems[:MAX_PROBLEMS_SHOWN]
    return body


def _error(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> AsciiJSONResponse:
    return AsciiJSONResponse(status_code=status, content=_error_body(message, problems))


def _error_bytes(status: int, message: str,
                 problems: list[dict[str, Any]] | None = None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return status, json_bytes(_error_body(message, problems)), []


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class ObserveAndContain:
    """ASGI middleware: counts and times every request, and turns an unexpected exception into a JSON 500.

    A 500 is reserved for faults on our side; bad input is answered with a 4xx before it gets here.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        status = 0

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            log.exception("internal error answering %s %s", scope.get("method"), scope.get("path"))
            self.metrics.count_error("internal")
            if status == 0:
                await _error(500, "internal server error; the request was not scored. See the server log.")(
                    scope, receive, send_observed)
        finally:
            if status == 0 and scope.get(TIMED_OUT):  # the body timeout answered 408 (serving.connections)
                status = 408
                self.metrics.count_error("body_timeout")
            if status in (404, 405):
                self.metrics.count_error("not_found" if status == 404 else "method_not_allowed")
            route = scope["path"] if scope["path"] in ROUTES else "other"
            # Nothing sent and nothing raised: the client left first (499, as nginx counts it).
            self.metrics.observe_request(route, scope["method"], status or 499, time.perf_counter() - started_at)


_JSON_TYPES = {"string": {"type": "string"}, "double": {"type": "number"}, "integer": {"type": "integer"},
               "boolean": {"type": "boolean"}, "timestamp": {"type": "string", "format": "date-time"}}


def record_json_schema(fields: tuple[InputField, ...]) -> dict[str, Any]:
    """JSON Schema (OpenAPI 3.1) of one raw record, from the bundle's input schema."""
    properties = {}
    for f in fields:
        base = dict(_JSON_TYPES[f.type])
        if f.nullable:
            base["type"] = [base["type"], "null"]
        properties[f.name] = base
    return {"type": "object", "properties": properties, "required": [f.name for f in fields],
            "additionalProperties": False}


def _openapi_predict(fields: tuple[InputField, ...], max_records: int) -> dict[str, Any]:
    record = record_json_schema(fields)
    problem = {"type": "object", "properties": {"record": {"type": "integer"}, "field": {"type": "string"},
                                                  "problem": {"type": "string"}}}
    error = {"type": "object", "properties": {"error": {"type": "string"},
                                              "problems": {"type": "array", "items": problem}}}
    scored = {"score": {"type": "number"}, "label": {"type": "integer"}}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
            {**record, "title": "One record"},
            {"type": "object", "title": "A batch", "required": ["records"], "additionalProperties": False,
             "properties": {"records": {"type": "array", "items": record, "minItems": 1, "maxItems": max_records}}},
        ]}}}},
        "responses": {
            "200": {"description": "Scores: `score` and `label` for one record, `predictions` for a batch",
                    "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "model_id": {"type": "string"}, "request_id": {"type": "string"}, **scored,
                        "predictions": {"type": "array", "items": {"type": "object", "properties": scored}}}}}}},
            "400": {"description": "The body is not JSON", "content": {"application/json": {"schema": error}}},
            "413": {"description": "Body or batch over the limit", "content": {"application/json": {"schema": error}}},
            "422": {"description": "Records do not match the input schema; each problem names record and field",
                    "content": {"application/json": {"schema": error}}},
        },
    }


def _records_of(body: Any) -> tuple[list[Any], bool] | tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """(records, single) from a parsed body, or a 422 when a batch envelope is malformed."""
    if not (isinstance(body, dict) and "records" in body):
        return [body], True
    extra = sorted(k for k in body if k != "records")
    if extra:
        return _error_bytes(422, "a batch is {\"records\": [...]} with no other keys",
                            [{"record": 0, "field": k, "problem": "unexpected key next to 'records'"} for k in extra])
    records = body["records"]
    if not isinstance(records, list):
        return _error_bytes(422, "'records' must be an array of objects",
                            [{"record": 0, "field": "records", "problem": f"expected array, got {type(records).__name__}"}])
    return records, False


@dataclass(frozen=True)
class _Validated:
    """A /predict body that passed validation."""

    request: ScoringRequest
    """The validated records (``serving.request``)."""
    records: bytes
    """The records as a JSON array, for the prediction log."""
    single: bool
    """The body was one record (answered as one object), not a batch."""


Answer = Callable[[bytes | None, str, Grant], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]


class PredictFastPath:
    """ASGI app: ``POST /predict`` is answered here, everything else by the FastAPI app.

    A single record is cheap to score, so per-request framework work (routing, dependency
    resolution, request and response objects, four middleware layers) was most of its cost.
    This path reads the body (counting against the limit while reading), answers with the same
    function as the FastAPI route, and is observed and contained by the same middleware.
    """

    def __init__(self, app: ASGIApp, answer: Answer, metrics: ServerMetrics, max_body_bytes: int,
                 keys: KeyWatcher | None = None) -> None:
        self.app = app
        self.answer = answer
        self.max_body_bytes = max_body_bytes
        self.predict = ObserveAndContain(RequireKey(self._predict, keys, metrics), metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST":
            await self.predict(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await self._body(receive)
        if raw is False:
            return  # the client went away; there is no one to answer
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        status, body, headers = await self.answer(raw, given, scope.get(SCOPE_KEY, UNCHECKED))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    async def _body(self, receive: Receive) -> bytes | None | bool:
        """The body; None once it passes the limit (counted as read, whatever Content-Length says); False on disconnect."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def create_app(settings: ServerSettings) -> PredictFastPath:
    """Build the app. The model is loaded and warmed up here; threads start with the server."""
    source = Path(settings.model_source)
    first_path = resolve_bundle_path(source)
    store = open_store(settings.store or default_store_url(first_path))
    first = load_warm(first_path, feature_path=settings.feature_path, store=store)
    holder = ModelHolder(first)
    metrics = ServerMetrics()
    metrics.model_loaded(first.model_id)
    schema = first.manifest.input_schema
    is_registry = source != resolve_bundle_path(source)
    state: dict[str, Any] = {"ready": False}
    exchange = None if settings.metrics_exchange is None else MetricsExchange(settings.metrics_exchange, metrics)
    keys = None if settings.api_keys is None else KeyWatcher(settings.api_keys, settings.api_keys_reload_interval_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        prediction_log = PredictionLog(settings.prediction_log)
        scorer = BatchingScorer(holder, prediction_log, metrics, threads=settings.scoring_threads,
                                max_batch_records=settings.max_batch_records)
        watcher = ChampionWatcher(source, holder, metrics, settings.reload_interval_s, settings.feature_path, store)
        scorer.start()
        if is_registry and settings.reload_interval_s > 0:
            watcher.start()
        if exchange is not None:
            exchange.start()
        if keys is not None:
            keys.start()
        state.update(scorer=scorer, ready=True)
        try:
            yield
        finally:
            state["ready"] = False
            watcher.stop()
            scorer.stop()
            prediction_log.close()
            store.close()
            if exchange is not None:
                exchange.stop()
            if keys is not None:
                keys.stop()

    app = FastAPI(title="Model server", version="1", description=__doc__, lifespan=lifespan)
    app.add_middleware(RequireKey, watcher=keys, metrics=metrics)
    app.add_middleware(ObserveAndContain, metrics=metrics)  # added last, so outermost: refusals are observed too

    @app.get("/health", summary="Liveness: the process answers")
    def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready", summary="Readiness: a model is loaded and warmed up, scoring threads run, the online store answers")
    def ready() -> JSONResponse:
        if not state["ready"]:
            return _error(503, "model not loaded or warm-up not passed yet")
        if holder.current.store is not None:
            try:
                holder.current.store.ping()
            except StoreUnavailable as exc:
                return _error(503, f"{exc}; records cannot be scored without their entity state")
        return AsciiJSONResponse({"status": "ready", "model_id": holder.current.model_id})

    @app.get("/metadata", summary="The served model: id, features, input schema, metrics and gate results")
    def metadata() -> JSONResponse:
        current = holder.current
        m = current.manifest
        return AsciiJSONResponse({
            "model_id": m.bundle_id, "task": m.task, "features": list(m.feature_names),
            "feature_path": current.feature_path,
            "online_store": None if current.store is None else current.store.url,
            "entity_state": [e.to_json() for e in m.entity_state],
            "input_schema": [f.__dict__ for f in m.input_schema], "threshold": m.threshold,
            "metrics": m.metrics, "gates": m.gates, "lineage": m.lineage,
        })

    @app.get("/metrics", summary="Prometheus metrics (text format 0.0.4)")
    def metrics_() -> Response:
        peers = exchange.peers() if exchange is not None else []
        return Response(metrics.render(peers), media_type=CONTENT_TYPE)

    batch_decoder = BatchBodyDecoder(schema)  # hot reload keeps the input schema, so one decoder serves

    def validated(raw: bytes) -> _Validated | tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """The request a /predict body holds, or the 4xx answer naming what is wrong with it."""
        fast = batch_decoder.decode(raw, settings.max_records)
        if fast is not None:  # a plainly valid batch, read in one pass
            return _Validated(*fast, single=False)
        try:
            body = parse_json(raw)
        except RecursionError:  # nesting past the standard library's depth
            metrics.count_error("invalid_json")
            return _error_bytes(400, TOO_DEEP)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, huge ints
            metrics.count_error("invalid_json")
            return _error_bytes(400, f"request body is not valid JSON: {str(exc)[:200]}")
        if nests_too_deep(body):  # before validation renders a value nested a thousand deep
            metrics.count_error("invalid_json")
            return _error_bytes(400, TOO_DEEP)
        parsed = _records_of(body)
        if isinstance(parsed, tuple) and isinstance(parsed[0], int):
            metrics.count_error("invalid_input")
            return parsed
        records, single = parsed
        if len(records) > settings.max_records:
            metrics.count_error("too_many_records")
            return _error_bytes(413, f"batch of {len(records)} records is over the {settings.max_records} record limit")
        try:
            table = holder.current.request(records)
        except InputValidationError as exc:
            metrics.count_error("invalid_input")
            return _error_bytes(422, str(exc), [p.__dict__ for p in exc.problems])
        return _Validated(table, records_json(records), single)

    async def answer(raw: bytes | None, given_request_id: str,
                     grant: Grant) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, JSON body and extra headers for a /predict body (None: over the size limit);
        ``grant``: what the request's key allows (whether its events are recorded, the key id logged)."""
        if raw is None:
            metrics.count_error("body_too_large")
            return _error_bytes(413, f"request body is over the {settings.max_body_bytes} byte limit; send smaller batches")
        request = validated(raw)
        if not isinstance(request, _Validated):
            return request
        request_id = given_request_id if _REQUEST_ID.fullmatch(given_request_id) else uuid.uuid4().hex
        try:
            result = await state["scorer"].score(request.request, request.records, request_id,
                                                 settings.record and grant.record, grant.key_id)
        except FeatureComputationError as exc:
            metrics.count_error("invalid_input")
            return _error_bytes(422, str(exc))
        except InputValidationError as exc:  # found while scoring: an event re-sent with other values
            metrics.count_error("invalid_input")
            return _error_bytes(422, str(exc), [p.__dict__ for p in exc.problems])
        except StoreUnavailable as exc:
            metrics.count_error("store_unavailable")
            return _error_bytes(503, f"{exc}; the record was not scored (its entity state cannot be read). "
                                     "Retry when /ready answers 200.")
        except StoreSchemaError as exc:  # found at the first request when the store was down at start
            metrics.count_error("store_unavailable")
            return _error_bytes(503, f"{exc}; the record was not scored")
        payload: dict[str, Any] = {"model_id": result.model_id, "request_id": request_id}
        if request.single:
            payload.update(result.to_records()[0])
        else:
            payload["predictions"] = orjson.Fragment(result.to_json())
        return 200, _success_bytes(payload), [(b"x-request-id", request_id.encode())]

    # Declared for the OpenAPI document (and served when the app is mounted without the fast path).
    @app.post("/predict", summary="Score one raw record or a batch", openapi_extra=_openapi_predict(schema, settings.max_records))
    async def predict(request: Request) -> Response:
        try:
            raw: bytes | None = await _read_body(request, settings.max_body_bytes)
        except _BodyTooLarge:
            raw = None
        status, content, headers = await answer(raw, request.headers.get("x-request-id", ""),
                                                request.scope.get(SCOPE_KEY, UNCHECKED))
        return Response(content, status_code=status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in headers})

    return PredictFastPath(app, answer, metrics, settings.max_body_bytes, keys)
