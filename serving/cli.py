"""``serve-model``: the command line of the HTTP server (``serving.server``): flags, the checks
that a bad bundle or store fails once and clearly before any worker starts, and uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


from serving.auth.guard import KeyWatcher
from serving.connections import ConnectionLimits, GuardedHttp
from serving.errors import BundleError, KeyFileError, RegistryError
from serving.prediction_log import PredictionLogOptions
from serving.predictor import default_store_url
from serving.registry import resolve_bundle_path
from serving.reload import load_warm
from serving.server import SETTINGS_ENV, ServerSettings, create_app, settings_to_json
from serving.store import StoreSchemaError, StoreUnavailable, open_store

log = logging.getLogger("serving.server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve-model", description="Serve a model bundle over HTTP.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--registry", type=Path, default=Path("artifacts/registry"),
                        help="registry directory; its champion is served and hot-reloaded (default: artifacts/registry)")
    source.add_argument("--bundle", type=Path, help="serve this bundle directory instead of the champion")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--prediction-logs", type=Path, default=PredictionLogOptions.directory,
                        help="folder of the prediction log files (default: artifacts/prediction_logs)")
    parser.add_argument("--fsync-interval", type=float, default=PredictionLogOptions.fsync_interval_s,
                        help="seconds between fsyncs of the prediction log; 0 fsyncs before every answer (default: 1)")
    parser.add_argument("--reload-interval", type=float, default=ServerSettings.reload_interval_s,
                        help="seconds between checks of the champion pointer; 0 disables hot reload (default: 2)")
    parser.add_argument("--scoring-threads", type=int, default=ServerSettings.scoring_threads,
                        help="threads running the feature SQL and the model; 0 scores in the event loop, which suits "
                             f"--workers as many as the cores (default: {ServerSettings.scoring_threads})")
    parser.add_argument("--path", choices=("auto", "sql", "fused"), default="auto",
                        help="how features are computed: the fused ONNX model when verified (auto), or always sql/fused")
    parser.add_argument("--store", default=None,
                        help="online store of entity state: embedded:<folder> or redis://host:port/db "
                             "(default: the embedded store beside the registry, <artifacts>/online_store)")
    parser.add_argument("--no-record", action="store_true",
                        help="score without writing the scored records into the online store")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--api-keys", type=Path, default=None,
                      help="JSON file of API keys (ids, SHA-256 hashes, scopes), reloaded on change; written by "
                           "`python -m serving.auth issue` (see docs/auth.md). Required unless --no-auth")
    auth.add_argument("--no-auth", action="store_true",
                      help="serve every request without a key: for local use only, anyone who reaches the port "
                           "can score and write entity state")
    parser.add_argument("--api-keys-interval", type=float, default=ServerSettings.api_keys_reload_interval_s,
                        help="seconds between checks of the API key file; 0 reads it once (default: 2)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes on the port, each with its own model, scoring threads and prediction-log "
                             "files; /metrics adds up all of them (default: 1)")
    parser.add_argument("--header-timeout", type=float, default=ConnectionLimits.header_timeout_s, metavar="SECONDS",
                        help="seconds for a request's headers to arrive; 408 and closed after "
                             f"(default: {ConnectionLimits.header_timeout_s:g})")
    parser.add_argument("--body-timeout", type=float, default=ConnectionLimits.body_timeout_s, metavar="SECONDS",
                        help="seconds for a request's whole body to arrive after its headers; 408 and closed after "
                             f"(default: {ConnectionLimits.body_timeout_s:g})")
    parser.add_argument("--max-connections", type=int, default=ConnectionLimits.max_connections, metavar="N",
                        help="open connections per worker; a new one past it gets 503 with Retry-After and is closed "
                             f"(default: {ConnectionLimits.max_connections})")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.scoring_threads < 0:
        parser.error("--workers must be at least 1 and --scoring-threads at least 0")
    try:
        limits = ConnectionLimits(args.header_timeout, args.body_timeout, args.max_connections)
    except ValueError as exc:
        parser.error(str(exc))
    if args.api_keys is None and not args.no_auth:
        parser.error("keys are required: pass --api-keys FILE (issue one with `python -m serving.auth issue --file "
                     "keys.json --id me --scopes score+record,admin`), or --no-auth for local use")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    settings = ServerSettings(
        model_source=args.bundle or args.registry,
        prediction_log=PredictionLogOptions(directory=args.prediction_logs, fsync_interval_s=args.fsync_interval),
        reload_interval_s=args.reload_interval,
        scoring_threads=args.scoring_threads,
        feature_path=args.path,
        store=args.store,
        record=not args.no_record,
        api_keys=args.api_keys,
        api_keys_reload_interval_s=args.api_keys_interval,
    )
    if args.no_auth:
        log.warning("--no-auth: every request is served without an API key; anyone who can reach %s:%d can score "
                    "and write entity state. Use --api-keys FILE outside local use (docs/auth.md).", args.host, args.port)
    # httptools (as GuardedHttp: uvicorn's protocol with timeouts and a connection cap) and uvloop,
    # C parser and event loop instead of the pure-Python defaults: less of the server's own time per
    # request, which for one record is most of it.
    options: dict[str, Any] = dict(host=args.host, port=args.port, log_level="warning", access_log=False,
                                   http=GuardedHttp(limits), loop="uvloop")
    try:
        if settings.api_keys is not None:
            KeyWatcher(settings.api_keys, 0)  # a bad key file is one clear error at start, not one per worker
        if args.workers == 1:
            app = create_app(settings)
        else:
            # Each worker loads the model after the spawn; loading it once here first makes a bad
            # bundle one clear error rather than N workers failing one after another.
            path = resolve_bundle_path(settings.model_source)
            checked_store = open_store(settings.store or default_store_url(path))
            try:
                load_warm(path, feature_path=settings.feature_path, store=checked_store).close()
            finally:
                checked_store.close()
    except KeyFileError as exc:
        print(f"serve-model: cannot read the API keys: {exc}", file=sys.stderr)
        return 2
    except (BundleError, RegistryError, StoreUnavailable, StoreSchemaError, ValueError) as exc:
        print(f"serve-model: cannot load the model: {exc}", file=sys.stderr)
        return 2
    if args.workers == 1:
        uvicorn.run(app, **options)
        return 0
    with tempfile.TemporaryDirectory(prefix="serve-model-metrics-") as shared:
        os.environ[SETTINGS_ENV] = settings_to_json(dataclasses.replace(settings, metrics_exchange=Path(shared)))
        uvicorn.run("serving.server:worker_app", factory=True, workers=args.workers, **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
