"""Scoring latency with API keys on and off, side by side in one run.

    python bench/auth.py --registry artifacts/registry --landing data/landing

Starts two servers on 127.0.0.1 on the same champion, each on its own copy of the online store:
one with ``--no-auth``, one with ``--api-keys`` (a key file of 20 keys, the request's key being
the last, so the lookup compares against all of them). Then alternates short rounds between
them (only one is under load at a time, so both see the same machine): single-record
``POST /predict`` from one keep-alive connection (latency) and from 8 (throughput), the client
a raw asyncio loop of a few microseconds per request. The ratio is taken per round (on against
the off round next to it) and the median of those is shown, so load from other processes on
the machine shifts both sides alike. Also times the check alone (header scan, SHA-256, 20
constant-time compares, scope decision) in process. Prints one table; figures go in docs/auth.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.serving import as_records, free_port, machine, sample  # noqa: E402
from bench.timing import timings  # noqa: E402
from serving.auth.guard import decide, presented_key  # noqa: E402
from serving.auth.keys import ApiKey, KeyRing, key_digest, new_key, write_key_file  # noqa: E402
from serving.bundle import load_bundle  # noqa: E402
from serving.registry import resolve_bundle_path  # noqa: E402


def start(registry: Path, store: Path, work: Path, auth: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--registry", str(registry), "--host", "127.0.0.1",
                             "--port", str(port), "--prediction-logs", str(work / "logs"), "--store", f"embedded:{store}",
                             *auth], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server not ready within 90 s")


def requests(port: int, records: list[dict], key: str | None) -> list[bytes]:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    out = []
    for r in records:
        body = json.dumps(r).encode()
        out.append((f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


async def _client(port: int, payloads: list[bytes], until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            writer.write(payloads[i % len(payloads)])
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"non-200 answer: {head[:80]!r}")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            i += 1
    finally:
        writer.close()


def round_(port: int, payloads: list[bytes], clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []

    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_client(port, payloads, until, latencies) for _ in range(clients)))

    asyncio.run(main())
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=Path("artifacts/registry"))
    parser.add_argument("--landing", type=Path, default=Path("data/landing"))
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per setting and load (default 10)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per round (default 2)")
    args = parser.parse_args()
    bundle = load_bundle(resolve_bundle_path(args.registry))
    records = as_records(sample(args.landing, [f.name for f in bundle.manifest.input_schema], 200))
    store = args.registry.resolve().parent / "online_store"
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        work = Path(tmp)
        keys = [new_key() for _ in range(20)]
        write_key_file(work / "keys.json", KeyRing(tuple(ApiKey(f"k{i}", key_digest(k), frozenset({"score+record"}))
                                                        for i, k in enumerate(keys))))
        servers = {}
        for name, auth, key in (("auth off", ["--no-auth"], None),
                                ("auth on", ["--api-keys", str(work / "keys.json")], keys[-1])):
            copy = shutil.copytree(store, work / name.replace(" ", "-") / "online_store")
            proc, port = start(args.registry, copy, work / name.replace(" ", "-"), auth)
            servers[name] = (proc, requests(port, records, key), port)
        try:
            results: dict[tuple[str, int], list[float]] = {}
            ratios: dict[int, list[float]] = {1: [], 8: []}
            for name, (_, payloads, port) in servers.items():  # warm-up: every record once, then a second
                round_(port, payloads, 1, 1.0)
            for _ in range(args.rounds):
                for clients in (1, 8):
                    p50 = {}
                    for name, (_, payloads, port) in servers.items():
                        lat = round_(port, payloads, clients, args.seconds)
                        results.setdefault((name, clients), []).extend(lat)
                        p50[name] = float(np.median(lat))
                    ratios[clients].append(p50["auth on"] / p50["auth off"])
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=15)
    print(f"machine: {machine()}")
    print(f"command: python bench/auth.py --rounds {args.rounds} --seconds {args.seconds:g} (single-record POST /predict, "
          "record scope, 20 keys in the file)")
    print(f"{'setting':<10} {'clients':>7} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    figures = {}
    for (name, clients), lat in results.items():
        ms = np.array(lat) * 1e3
        rps = len(lat) / (args.rounds * args.seconds)
        figures[(name, clients)] = (np.percentile(ms, 50), np.percentile(ms, 99), rps)
        print(f"{name:<10} {clients:>7} {len(lat):>9} {figures[(name, clients)][0]:>8.3f} "
              f"{figures[(name, clients)][1]:>8.3f} {rps:>8.0f}")
    for clients in (1, 8):
        off, on = figures[("auth off", clients)], figures[("auth on", clients)]
        print(f"{clients} client(s): auth on / off: p50 {on[0] / off[0] - 1:+.1%}, p99 {on[1] / off[1] - 1:+.1%}, "
              f"throughput {on[2] / off[2] - 1:+.1%}; median of per-round p50 ratios {np.median(ratios[clients]) - 1:+.1%} "
              f"(rounds: {', '.join(f'{r - 1:+.1%}' for r in ratios[clients])})")
    ring = KeyRing(tuple(ApiKey(f"k{i}", key_digest(k), frozenset({"score+record"})) for i, k in enumerate(keys)))
    scope = {"headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {keys[-1]}".encode())]}
    check = timings(lambda: decide(ring, "/predict", presented_key(scope)), 20_000) * 1e6
    print(f"the check alone, in process: p50 {np.percentile(check, 50):.2f} us, p99 {np.percentile(check, 99):.2f} us "
          f"({np.percentile(check, 50) / 1e3 / figures[('auth off', 1)][0]:.2%} of the 1-client p50)")


if __name__ == "__main__":
    main()
