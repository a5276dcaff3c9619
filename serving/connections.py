"""Connection handling: clients cannot hold the server.

uvicorn's HTTP protocol (httptools) waits for a request's headers and body as long as the client
keeps the socket open, and accepts as many connections as the process has descriptors: a client
that sends 13 bytes of a 1,000-byte body, or opens a socket and sends nothing, holds it forever.
``GuardedHttp`` is the protocol factory ``serve-model`` hands uvicorn (``http=``) instead:

- **Header timeout**: a request's headers (from the connection's start, or from the first byte of
  a request on a kept-alive connection) must arrive within ``header_timeout_s``, else 408 and close.
  Idle time between requests is uvicorn's keep-alive timeout (5 s, closed without an answer).
- **Body timeout**: the whole body must arrive within ``body_timeout_s`` of the headers (a total,
  not a gap between reads, so a body trickled a byte at a time cannot hold it either), else 408
  and close. The app's ``receive()`` then sees a disconnect; ``TIMED_OUT`` in the request's scope
  tells the metrics middleware it was a 408, not a client that left.
- **Connection cap**: past ``max_connections`` open connections in this worker, a new one is
  answered 503 with ``Retry-After`` and closed at once, before anything is read.

Every refusal is a JSON body naming the limit and the flag that sets it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

TIMED_OUT = "serving.body_timed_out"
"""Scope key set when the body timeout ended the request (the metrics count it as a 408)."""
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take to send a request, and how many connections a worker holds."""

    header_timeout_s: float = 10.0
    """Seconds for a request's headers to arrive (``--header-timeout``); 408 after."""
    body_timeout_s: float = 30.0
    """Seconds for a request's whole body to arrive once its headers have (``--body-timeout``); 408 after."""
    max_connections: int = 1000
    """Open connections per worker (``--max-connections``); a new one past it is answered 503 and closed.
    Keep it below the process's open-file limit (``ulimit -n``)."""

    def __post_init__(self) -> None:
        if not (self.header_timeout_s > 0 and self.body_timeout_s > 0 and self.max_connections >= 1):
            raise ValueError(f"connection limits must be positive, got {self}: pass --header-timeout and "
                             "--body-timeout above 0 seconds and --max-connections of at least 1")


def _canned(status: str, message: str, *extra: bytes) -> bytes:
    """A complete HTTP/1.1 response that closes the connection (written straight to the socket)."""
    body = json.dumps({"error": message}, ensure_ascii=True).encode()
    head = [f"HTTP/1.1 {status}".encode(), b"content-type: application/json",
            b"content-length: " + str(len(body)).encode(), b"connection: close", *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@dataclass(frozen=True)
class GuardedHttp:
    """The ``http=`` protocol factory for uvicorn: ``GuardedProtocol`` with these limits.
    A frozen dataclass, so uvicorn can hand it to ``--workers`` processes (it pickles the config)."""

    limits: ConnectionLimits

    def __call__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> GuardedProtocol:
        return GuardedProtocol(config, server_state, app_state, _loop, limits=self.limits)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and a connection cap."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: ConnectionLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._timer: asyncio.TimerHandle | None = None
        self._running: Any = None
        """The request cycle whose app runs (uvicorn's ``self.cycle`` is the newest parsed one)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport  # what connection_lost closes; never counted as a connection
            transport.write(_canned(
                "503 Service Unavailable",
                f"the server holds its limit of {self.limits.max_connections} connections per worker; retry "
                f"in {RETRY_AFTER_S} s (or reuse a kept-alive connection; --max-connections sets the limit)",
                f"retry-after: {RETRY_AFTER_S}".encode()))
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._drop_unanswered()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # the connection's first request is timed from connection_made
            self._arm(self.limits.header_timeout_s, self._headers_timed_out)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # Bad bytes after a complete request: uvicorn answers 400 and closes at once, while that
        # request may still be scoring; its answer would be written to the closed transport (a
        # RuntimeError, logged as an internal error). It is dropped instead, as for a client that left.
        self._drop_unanswered()
        super().send_400_response(msg)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle  # uvicorn tracks only the newest cycle; a pipelined one may run behind it
        super()._start_asgi_task(cycle, app)
        # Timed from when its body can be read: a pipelined request's waits (reading paused) for
        # the answers before it, so its clock starts when it starts, not at its headers.
        if cycle.more_body and not self.transport.is_closing():
            self._arm(self.limits.body_timeout_s, self._body_timed_out)

    def _drop_unanswered(self) -> None:
        """Mark every request of this connection not yet answered as disconnected, before the
        transport closes: uvicorn marks only the newest, and a pipelined request running behind it
        would write its answer to the closed transport."""
        for cycle in (self._running, self.cycle, *(c for c, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _headers_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._in_flight():  # a pipelined request's headers stalled behind an answer still being written
            self._arm(self.limits.header_timeout_s, self._headers_timed_out)
            return
        self.transport.write(_canned(
            "408 Request Timeout",
            f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s; send the whole "
            "request at once (--header-timeout sets the limit)"))
        self._drop_unanswered()
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self._running
        if cycle is not None and not cycle.response_started:
            cycle.scope[TIMED_OUT] = True  # type: ignore[literal-required]
            cycle.disconnected = True  # the app's receive() returns http.disconnect; its send is dropped
            cycle.message_event.set()
            self.transport.write(_canned(
                "408 Request Timeout",
                f"the request body did not arrive within {self.limits.body_timeout_s:g} s of its headers (fewer "
                "bytes than Content-Length, or sent too slowly); send the whole body at once (--body-timeout "
                "sets the limit)"))
        self._drop_unanswered()
        self.transport.close()  # answered already (the app did not wait for the body): just let go
