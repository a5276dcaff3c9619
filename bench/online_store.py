"""Online store benchmark: one entity's state read and one event's write, store against store, same run.

    python bench/online_store.py                                  # embedded (LMDB), SQLite WAL, Redis; 100,000 entities
    python bench/online_store.py --stores embedded --entities 10000000 --checkpoints 10000,1000000,10000000

Every store holds the same generated entities (``--events`` events each, the demo's fields) and
is timed on the same random keys: ``read`` is one entity's events (what a request reads), and
``record`` is one new event written through (read-modify-write with admission and compaction,
what every scored event costs). SQLite in WAL mode is the embedded alternative the LMDB store was
chosen against; it is implemented here only, over the same codec. Redis is a real
``redis-server`` started on 127.0.0.1 for the run (Debian's ``redis-server`` on PATH).

With ``--checkpoints`` the store is loaded in steps and timed at each fill level, with the
process's peak RSS and the store's size on disk: per-request latency should stay flat and memory
bounded as entities grow. Prints one table; nothing is asserted (figures: docs/online-store.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from serving.store import EntitySpec, Events, KeepRule, OnlineStore, RecordOutcome, open_store  # noqa: E402
from serving.store.base import FUTURE_SKEW_US, admit  # noqa: E402
from serving.store.events import compact, merge  # noqa: E402

SPEC = EntitySpec(name="user", relation="entity_events__user", key="user_id", event_key="txn_id", time="txn_ts",
                  fields=("amount", "country_code", "device_type"), window_days=30,
                  keep=(KeepRule(), KeepRule("country_code"), KeepRule("device_type")))
START_US = 1_767_225_600_000_000  # 2026-01-01 UTC
DAY_US = 86_400_000_000
COUNTRIES = ("US", "GB", "DE", "FR", "NG", "BR", "IN")
DEVICES = ("ios", "android", "web")


class SqliteStore:
    """The alternative measured against LMDB: one row per entity, its events in the same codec."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:{path}"
        self._db = sqlite3.connect(path / "store.sqlite", isolation_level=None, check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute("create table if not exists events (k text primary key, v blob)")

    def read(self, spec: EntitySpec, keys: Sequence[str]) -> dict[str, Events]:
        out = {}
        for k in keys:
            row = self._db.execute("select v from events where k = ?", (k,)).fetchone()
            out[k] = Events.decode(row[0] if row else None, spec)
        return out

    def record(self, spec: EntitySpec, rows: Iterable[tuple[str, tuple[Any, ...]]], *, replace: bool = False,
               check: bool = True, read: dict[str, Events] | None = None) -> RecordOutcome:
        by_key: dict[str, list[tuple[Any, ...]]] = {}
        for key, row in rows:
            by_key.setdefault(key, []).append(row)
        self._db.execute("begin immediate")
        held = self.read(spec, list(by_key))
        accepted, stale, implausible = admit(held, by_key, None, spec, FUTURE_SKEW_US) if check else (by_key, 0, 0)
        recorded = 0
        for key, group in accepted.items():
            events, changed = merge(held[key], group, replace=replace)
            recorded += changed
            if changed:
                self._db.execute("insert or replace into events values (?, ?)", (key, compact(events, spec).encode()))
        self._db.execute("commit")
        return RecordOutcome(recorded, 0, stale, implausible)

    def close(self) -> None:
        self._db.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is not on PATH: apt-get install -y redis-server (or --stores embedded,sqlite)")
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start within 20 s")


def entity_rows(first: int, count: int, events: int, rng: np.random.Generator) -> list[tuple[str, tuple[Any, ...]]]:
    """``events`` events for each of entities first..first+count, over the 30 days from START_US."""
    shape = (count, events)
    times = np.sort(rng.integers(START_US, START_US + 30 * DAY_US, shape), axis=1).ravel().tolist()
    amounts = np.round(rng.gamma(2, 40, shape), 2).ravel().tolist()
    countries = [COUNTRIES[i] for i in rng.integers(len(COUNTRIES), size=count * events).tolist()]
    devices = [DEVICES[i] for i in rng.integers(len(DEVICES), size=count * events).tolist()]
    users = [f"u{e}" for e in range(first, first + count) for _ in range(events)]
    event_keys = [f"t{e}-{j}" for e in range(first, first + count) for j in range(events)]
    return [(u, (k, t, a, c, d)) for u, k, t, a, c, d in zip(users, event_keys, times, amounts, countries, devices)]


def load(store: Any, first: int, count: int, events: int, seed: int, batch: int = 20_000) -> None:
    rng = np.random.default_rng(seed + first)
    for start in range(first, first + count, batch):
        n = min(batch, first + count - start)
        store.record(SPEC, entity_rows(start, n, events, rng), check=False)


def timed(fn: Callable[[int], object], n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - t0
    return out * 1e6


def measure(store: Any, entities: int, ops: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = [f"u{k}" for k in rng.integers(0, entities, ops)]
    now = START_US + 30 * DAY_US + 1
    read = timed(lambda i: store.read(SPEC, [keys[i]]), ops)
    record = timed(lambda i: store.record(SPEC, [(keys[i], (f"new-{seed}-{i}", now + i, 12.5, "US", "ios"))]), ops)
    return {"read": read, "record": record}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def _size(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="embedded,sqlite,redis", help="comma-separated: embedded, sqlite, redis")
    parser.add_argument("--entities", type=int, default=100_000, help="entities loaded (default 100,000)")
    parser.add_argument("--events", type=int, default=20, help="events per entity (default 20)")
    parser.add_argument("--ops", type=int, default=5_000, help="timed reads and writes per store (default 5,000)")
    parser.add_argument("--checkpoints", default="", help="fill levels to time at, e.g. 10000,1000000,10000000")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    levels = sorted(int(x) for x in args.checkpoints.split(",") if x) or [args.entities]
    print(f"machine: {machine()}; {args.events} events per entity, {args.ops:,} operations per figure")
    print(f"{'store':<10} {'entities':>11} {'read p50 us':>12} {'read p99':>9} {'record p50 us':>14} {'record p99':>11} "
          f"{'peak RSS MiB':>13} {'disk MiB':>9} {'load s':>7}")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for name in args.stores.split(","):
            work = Path(tmp) / name
            work.mkdir()
            redis_proc = None
            if name == "embedded":
                store: Any = open_store(f"embedded:{work}")
            elif name == "sqlite":
                store = SqliteStore(work)
            elif name == "redis":
                redis_proc, url = start_redis(work)
                store = open_store(url)
            else:
                raise SystemExit(f"--stores: unknown store {name!r}; expected embedded, sqlite or redis")
            try:
                loaded = 0
                for level in levels:
                    t0 = time.perf_counter()
                    load(store, loaded, level - loaded, args.events, args.seed)
                    seconds = time.perf_counter() - t0
                    loaded = level
                    m = measure(store, loaded, args.ops, args.seed + level)
                    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(f"{name:<10} {loaded:>11,} {np.percentile(m['read'], 50):>12.1f} {np.percentile(m['read'], 99):>9.1f} "
                          f"{np.percentile(m['record'], 50):>14.1f} {np.percentile(m['record'], 99):>11.1f} "
                          f"{rss:>13.0f} {_size(work) if name != 'redis' else float('nan'):>9.0f} {seconds:>7.1f}", flush=True)
            finally:
                store.close()
                if redis_proc is not None:
                    redis_proc.terminate()
                    redis_proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
