"""Seeded hostile HTTP cases for the fuzz suite, sent over raw sockets to a real server on 127.0.0.1.

What schemathesis cannot send: bodies nested hundreds or thousands deep, bodies that stop short
of their Content-Length, bodies trickled slower than the body timeout, headers that never end,
broken framing (bad chunk sizes, two lengths, pipelined requests), and mutated records (any JSON
value in any field). Each case is one request on its own connection, and its outcome is the
status the server answered, or ``closed`` when it closed without one (a case that never
finishes sending gets its 408 or is closed; none may hang or get a 5xx).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.serverproc import LOOPBACK


@dataclass(frozen=True)
class Case:
    """One hostile request: the bytes sent at once, then bytes trickled with a pause before each."""

    kind: str
    """What it tries (``deep``, ``unfinished``, ``slow``, ``mutated``...), for the report."""
    head: bytes
    """Sent at once."""
    trickle: tuple[bytes, ...] = ()
    """Sent one piece at a time after ``head``, ``pause_s`` apart."""
    pause_s: float = 0.0
    stall: bool = False
    """Stop sending and wait for the server's answer (the server must time it out)."""


@dataclass
class Outcome:
    statuses: Counter[str] = field(default_factory=Counter)
    """``kind status`` -> count (``closed`` when the server closed without answering)."""
    server_errors: list[str] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: scalars of every type and edge, odd timestamps, small arrays and objects."""
    choice = rng.randrange(8 if depth < 3 else 6)
    if choice == 6:
        return [_json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if choice == 7:
        return {rng.choice(["a", "records", "amount", ""]): _json_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return [lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-(2**70), 2**70),
            lambda: rng.uniform(-1e300, 1e300),
            lambda: "".join(rng.choice("aZ0 \0\u2028\u00e9\U0001f600\"\\") for _ in range(rng.randrange(8))),
            lambda: rng.choice(["2026-W05-5", "20260201T100000", "2026-02-01t10:00:00+14:00", "2026-02-01T10:00:00\0",
                                "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01", "2026-02-30T00:00:00"]),
            ][choice]()


def _request(body: bytes, headers: dict[str, str], *, length: int | None = None, path: str = "/predict") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {LOOPBACK}", "Content-Type: application/json",
             f"Content-Length: {len(body) if length is None else length}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def cases(records: list[dict], headers: dict[str, str], n: int, seed: int) -> list[Case]:
    """``n`` seeded cases, mostly fast ones; a few percent stall until the server's timeouts."""
    rng = random.Random(seed)
    out: list[Case] = []
    for _ in range(n):
        record = dict(rng.choice(records))
        roll = rng.random()
        if roll < 0.25:  # a field, the body or the batch nested deep
            depth = rng.choice([31, 32, 33, 64, 500, 999, 1000, 1023, 1024, 1025, 5000, 100_000])
            nest = "[" * depth + "]" * depth if rng.random() < 0.7 else '{"a":' * depth + "1" + "}" * depth
            body = rng.choice([json.dumps({**record, "amount": "X"}), json.dumps({"records": [record, "X"]}), '"X"'])
            out.append(Case("deep", _request(body.replace('"X"', nest).encode(), headers)))
        elif roll < 0.70:  # a record with one or two fields replaced by any JSON value, or added, or dropped
            for _ in range(rng.randint(1, 2)):
                name = rng.choice([*record, "extra"])
                if rng.random() < 0.2:
                    record.pop(name, None)
                else:
                    record[name] = _json_value(rng)
            body = json.dumps(record if rng.random() < 0.6 else {"records": [record] * rng.randint(1, 20)}).encode()
            out.append(Case("mutated", _request(body, headers)))
        elif roll < 0.80:  # framing: truncated then closed, bad chunks, two lengths, pipelined, garbage
            body = json.dumps(record).encode()
            out.append(Case("framing", rng.choice([
                _request(body, headers, length=len(body) + 5)[:-3] + b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",
                _request(b"", headers)[:-4].replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
                + b"\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n",
                _request(body, headers).replace(b"\r\n\r\n", f"\r\nContent-Length: {len(body) + 1}\r\n\r\n".encode(), 1),
                _request(body, headers) * 3,
                b"\x00\xff GARBAGE / HTTP/9.9\r\n\r\n",
                _request(body, {**headers, "X-Long": "a" * 70_000}),
                _request(body, {**headers, "Expect": "100-continue"}),
            ])))
        elif roll < 0.88:  # other routes and methods, with and without a key
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"])
            path = rng.choice(["/predict", "/metadata", "/metrics", "/ready", "/health", "/docs", "/%00", "/" + "a" * 3000])
            key = headers if rng.random() < 0.7 else {}
            out.append(Case("route", _request(b"{}", key, path=path).replace(b"POST", method.encode(), 1)))
        elif roll < 0.96:  # a body trickled: some finish inside the body timeout, some do not
            body = json.dumps(record).encode()
            pieces = max(2, rng.choice([3, 6, 40]))
            step = max(1, len(body) // pieces)
            chunks = tuple(body[i:i + step] for i in range(0, len(body), step))
            out.append(Case("slow", _request(b"", headers, length=len(body)), chunks, rng.choice([0.01, 0.05, 0.2])))
        else:  # stalls: a body or headers that never finish
            body = json.dumps(record).encode()
            head = rng.choice([_request(body[:13], headers, length=1000),
                               _request(b"", headers, length=len(body))[:rng.randint(0, 40)]])
            out.append(Case("stall", head, stall=True))
    return out


async def _send(port: int, case: Case, outcome: Outcome, timeout_s: float) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    answer = asyncio.ensure_future(reader.read(1 << 20))  # read while sending: a 408 can come mid-trickle
    try:
        try:
            writer.write(case.head)
            await writer.drain()
            for piece in case.trickle:
                await asyncio.sleep(case.pause_s)
                if answer.done():
                    break  # answered (and closed): writing on would only draw a reset
                writer.write(piece)
                await writer.drain()
        except ConnectionError:
            pass  # closed by the server: read what it said
        response = await asyncio.wait_for(answer, timeout_s)
    except (ConnectionError, asyncio.IncompleteReadError):
        response = b""  # reset: the server let go of the connection (after its 408, say)
    except asyncio.TimeoutError:
        outcome.hung.append(f"{case.kind}: {case.head[:120]!r}")
        return
    finally:
        answer.cancel()
        writer.close()
    status = response.split(b" ", 2)[1].decode() if response.startswith(b"HTTP/1.1 ") else "closed"
    outcome.statuses[f"{case.kind} {status}"] += 1
    if status.startswith("5") and status != "503":  # 503: the connection cap, answered on purpose
        outcome.server_errors.append(f"{case.kind}: {case.head[:200]!r} -> {response[:300]!r}")


def run(port: int, all_cases: list[Case], *, concurrency: int, timeout_s: float) -> Outcome:
    """Send every case, ``concurrency`` connections at a time; none may take longer than ``timeout_s``."""
    outcome = Outcome()

    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(case: Case) -> None:
            async with gate:
                await _send(port, case, outcome, timeout_s)

        await asyncio.gather(*(one(c) for c in all_cases))

    asyncio.run(main())
    return outcome
