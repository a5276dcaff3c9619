"""HTTP model server: ``serve-model --registry artifacts/registry`` (or ``--bundle DIR``).

Endpoints: ``POST /predict`` (one record, or ``{"records": [...]}``), ``GET /health``,
``GET /ready``, ``GET /metadata``; OpenAPI docs at ``/docs``. Bad input is a 4xx naming the record
and field, never a 500.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serving.errors import BundleError, InputValidationError, RegistryError
from serving.predictor import Predictor


@dataclass(frozen=True)
class ServerSettings:
    """How the server finds its model and what it accepts."""

    model_source: Path
    """A bundle directory, or a registry directory whose champion is served."""
    max_body_bytes: int = 1 << 20
    """Largest request body accepted (413 above); counted while reading, not from Content-Length."""
    max_records: int = 10_000
    """Largest batch accepted (413 above)."""


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(status_code=status, content=body)


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the app; the model is loaded here, before the server accepts traffic."""
    predictor = Predictor.load(settings.model_source)
    ready = {"ok": False}

    app = FastAPI(title="Model server", version="1", description=__doc__)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready")
    def ready_() -> JSONResponse:
        if not ready["ok"]:
            return _error(503, "model not loaded or warm-up not passed yet")
        return JSONResponse({"status": "ready", "model_id": predictor.model_id})

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        m = predictor.manifest
        return {
            "model_id": m.bundle_id,
            "task": m.task,
            "features": list(m.feature_names),
            "input_schema": [f.__dict__ for f in m.input_schema],
            "threshold": m.threshold,
            "metrics": m.metrics,
            "gates": m.gates,
        }

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "oneOf": [
                        {"type": "object", "description": "one raw record"},
                        {"type": "object", "properties": {"records": {"type": "array", "items": {"type": "object"}}},
                         "required": ["records"]},
                    ]
                }}},
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        try:
            raw = await _read_body(request, settings.max_body_bytes)
        except _BodyTooLarge:
            return _error(413, f"request body is over the {settings.max_body_bytes} byte limit; send smaller batches")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        single = not (isinstance(body, dict) and "records" in body)
        records = [body] if single else body["records"]
        if not isinstance(records, list):
            return _error(422, "'records' must be an array of objects",
                          [{"record": 0, "field": "records", "problem": f"expected array, got {type(records).__name__}"}])
        if len(records) > settings.max_records:
            return _error(413, f"batch of {len(records)} records is over the {settings.max_records} record limit")
        try:
            result = predictor.predict(records)
        except InputValidationError as exc:
            return _error(422, str(exc), [p.__dict__ for p in exc.problems])
        out = result.to_records()
        payload: dict[str, Any] = {"model_id": result.model_id}
        if single:
            payload.update(out[0])
        else:
            payload["predictions"] = out
        return JSONResponse(payload)

    # Warm-up: the first query plans and allocates; do it before /ready says yes.
    predictor.predict([_example_record(predictor)])
    ready["ok"] = True
    return app


def _example_record(predictor: Predictor) -> dict[str, Any]:
    """A valid record of the bundle's schema, for warm-up."""
    samples = {"string": "warmup", "double": 1.0, "integer": 1, "boolean": False, "timestamp": "2026-01-01T12:00:00"}
    return {f.name: samples[f.type] for f in predictor.manifest.input_schema}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve-model", description="Serve a model bundle over HTTP.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--registry", type=Path, default=Path("artifacts/registry"),
                        help="registry directory; its champion is served (default: artifacts/registry)")
    source.add_argument("--bundle", type=Path, help="serve this bundle directory instead of the champion")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    args = parser.parse_args(argv)

    import uvicorn

    try:
        app = create_app(ServerSettings(model_source=args.bundle or args.registry))
    except (BundleError, RegistryError) as exc:
        print(f"serve-model: cannot load the model: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
