"""Who may call which route: the key ring in force, its reload, and the ASGI middleware that checks it.

``/health`` and ``/ready`` are open (probes). ``/predict`` needs ``score`` (scored, state read but
never written) or ``score+record`` (the event is also recorded). ``/metadata`` and ``/metrics``
need ``admin``. Any other path (``/docs``, ``/openapi.json``, unknown ones) needs a valid key of
any scope. A missing or unknown key is a 401, a key without the scope a 403; both JSON bodies
name the scope needed, and ``/metrics`` counts them by reason. The key itself is never logged.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.auth.keys import ApiKey, KeyRing, parse_key_file, read_key_file
from serving.errors import KeyFileError
from serving.metrics import ServerMetrics

log = logging.getLogger("serving.auth")

OPEN_ROUTES = frozenset({"/health", "/ready"})
ROUTE_SCOPES: dict[str, tuple[str, ...]] = {
    "/predict": ("score+record", "score"),
    "/metadata": ("admin",),
    "/metrics": ("admin",),
}
"""The scopes that allow each route, the first the fullest (``score+record`` before ``score``)."""
SCOPE_KEY = "serving.auth"
"""Where an allowed request's ``Grant`` sits in the ASGI scope."""
_BEARER = b"bearer "


@dataclass(frozen=True)
class Grant:
    """What an allowed request may do."""

    key_id: str | None
    """The key's id (None with ``--no-auth``): the prediction log records it."""
    record: bool
    """The scored events may be written into the online store (``score+record``)."""


NO_AUTH = Grant(key_id=None, record=True)
"""``--no-auth``: every request may record."""
UNCHECKED = Grant(key_id=None, record=False)
"""What a request that did not pass ``RequireKey`` gets (an app mounted without it): no writes."""


class KeyWatcher:
    """The key ring read from a file, re-read every ``interval_s`` when its bytes change.

    A file that fails to parse on a reload keeps the ring in force (logged once per change), so
    a bad edit never locks valid clients out; at start it raises ``KeyFileError``.
    """

    def __init__(self, path: Path, interval_s: float) -> None:
        self._path = path
        self._interval_s = interval_s
        self.ring, self._raw = read_key_file(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> str | None:
        """Re-read the file: "reloaded", "refused" (kept the old keys) or None (unchanged)."""
        try:
            raw = self._path.read_bytes()
        except OSError as exc:
            if self._raw != b"":
                log.error("API keys: cannot read %s, keeping the %d keys in force: %s", self._path, len(self.ring.keys), exc)
                self._raw = b""
            return None
        if raw == self._raw:
            return None
        self._raw = raw
        try:
            ring = parse_key_file(raw.decode("utf-8", "replace"), str(self._path))
        except KeyFileError as exc:
            log.error("API keys: refused the changed file, keeping the %d keys in force: %s", len(self.ring.keys), exc)
            return "refused"
        self.ring = ring  # one reference swap: a request sees the old ring or the new one
        log.info("API keys: reloaded %s, %d keys: %s", self._path, len(ring.keys), ", ".join(k.key_id for k in ring.keys))
        return "reloaded"

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_once()

    def start(self) -> None:
        if self._interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="api-key-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def presented_key(scope: Scope) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() == _BEARER:
                return value[7:].strip().decode("latin-1")
            return None
    return None


def decide(ring: KeyRing, path: str, key: str | None) -> Grant | tuple[int, str, str]:
    """The grant for a request, or (status, reason, message) when it is refused."""
    needed = ROUTE_SCOPES.get(path)
    names = " or ".join(needed) if needed else "any scope"
    if key is None:
        return 401, "missing_key", f"{path} needs an API key with scope {names}: send 'Authorization: Bearer <key>'"
    entry: ApiKey | None = ring.identify(key)
    if entry is None:
        return 401, "unknown_key", (f"the API key is not known (revoked, mistyped, or not issued); {path} needs a key "
                                    f"with scope {names}")
    if needed is None:
        return Grant(entry.key_id, record=False)
    for scope_name in needed:
        if scope_name in entry.scopes:
            return Grant(entry.key_id, record=scope_name == "score+record")
    return 403, "wrong_scope", (f"key {entry.key_id!r} has scopes {sorted(entry.scopes)}; {path} needs scope {names}. "
                                "Issue a key with that scope (python -m serving.auth issue)")


class RequireKey:
    """ASGI middleware: refuses requests without a key allowed on their route; puts the ``Grant`` of
    the others in ``scope[SCOPE_KEY]``. ``watcher`` None: ``--no-auth``, every request allowed."""

    def __init__(self, app: ASGIApp, watcher: KeyWatcher | None, metrics: ServerMetrics) -> None:
        self.app = app
        self.watcher = watcher
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.watcher is None or scope["path"] in OPEN_ROUTES:
            if scope["type"] == "http":
                scope[SCOPE_KEY] = NO_AUTH
            await self.app(scope, receive, send)
            return
        decision = decide(self.watcher.ring, scope["path"], presented_key(scope))
        if isinstance(decision, Grant):
            scope[SCOPE_KEY] = decision
            await self.app(scope, receive, send)
            return
        status, reason, message = decision
        self.metrics.count_auth_failure(reason)
        needed = list(ROUTE_SCOPES.get(scope["path"], ()))
        body = json.dumps({"error": message, "reason": reason, "required_scopes": needed}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="serve-model"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
