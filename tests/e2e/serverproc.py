"""Helpers for the HTTP tests: the real server in a subprocess on 127.0.0.1, and a bounded load loop.

The load loop speaks HTTP/1.1 keep-alive over raw asyncio streams: a client that costs a few
microseconds per request leaves the 2 cores to the server under test. Every loop stops at a
request count or a deadline, whichever comes first, and only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    base: str
    port: int
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_server(*args: str, work: Path, ready_timeout: float = 60) -> ServerProcess:
    """``python -m serving ARGS --host 127.0.0.1 --port P`` with output in ``work/server.log``; waits for /ready.
    Without ``--api-keys`` in ARGS the server runs with ``--no-auth`` (tests/e2e/test_auth.py checks keys)."""
    port = free_port()
    if "--api-keys" not in args and "--no-auth" not in args:
        args = (*args, "--no-auth")
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "server.log"
    # The server runs this checkout's code: from ``work``, ``-m serving`` would otherwise import
    # wherever the installed package points (another worktree's, say).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "serving", *args, "--host", LOOPBACK, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=work, env=env)
    server = ServerProcess(proc, f"http://{LOOPBACK}:{port}", port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.base}/ready", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not ready within {ready_timeout} s:\n{server.output()}")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: list[str] = field(default_factory=list)
    model_ids: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def failures(self) -> int:
        return self.sent - self.ok


def _request_bytes(port: int, body: bytes) -> bytes:
    head = (f"POST /predict HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def _client(port: int, payloads: list[bytes], result: LoadResult, stop_at: float, budget: list[int],
                  collect_model_ids: bool) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        i = 0
        while budget[0] > 0 and time.monotonic() < stop_at:
            budget[0] -= 1
            writer.write(payloads[i % len(payloads)])
            i += 1
            result.sent += 1
            try:
                status, body = await asyncio.wait_for(_read_response(reader), timeout=30)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                result.transport_errors.append(repr(exc))
                return
            result.statuses[status] += 1
            if collect_model_ids and status == 200:
                result.model_ids[json.loads(body)["model_id"]] += 1
    finally:
        writer.close()


def run_load(port: int, records: list[dict], *, clients: int, max_requests: int, max_seconds: float,
             collect_model_ids: bool = False) -> LoadResult:
    """Single-record POST /predict from ``clients`` keep-alive connections; stops at a count or a deadline."""
    payloads = [_request_bytes(port, json.dumps(r).encode()) for r in records]
    result = LoadResult()
    budget = [max_requests]

    async def main() -> None:
        stop_at = time.monotonic() + max_seconds
        await asyncio.gather(*(_client(port, payloads, result, stop_at, budget, collect_model_ids)
                               for _ in range(clients)))

    started = time.monotonic()
    asyncio.run(main())
    result.seconds = time.monotonic() - started
    return result


def environment_int(name: str, default: int) -> int:
    """An integer knob for the long tests (e.g. a full 200,000-request soak run by hand)."""
    return int(os.environ.get(name, default))


def issue_keys(path: Path, scopes: dict[str, str]) -> dict[str, str]:
    """Write a key file with one key per id (``{"ci": "score+record,admin"}``); returns id -> key."""
    from serving.auth.keys import ApiKey, KeyRing, key_digest, new_key, read_key_file, write_key_file

    ring = read_key_file(path)[0] if path.exists() else KeyRing()
    keys = {key_id: new_key() for key_id in scopes}
    for key_id, key in keys.items():
        ring = ring.with_key(ApiKey(key_id, key_digest(key), frozenset(scopes[key_id].split(","))))
    write_key_file(path, ring)
    return keys


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
