"""The embedded online store: LMDB, one file next to the artifacts, no server.

Chosen by measurement against SQLite in WAL mode (``bench/online_store.py``, figures in
docs/online-store.md): a read of one entity's events is faster, a write-through about the same,
and readers never wait for the writer. LMDB lets many processes
share the file (``serve-model --workers N``) with one writer at a time, and writes each commit
to the kernel before returning, so a killed process (SIGKILL) loses nothing it committed; it
does not fsync every commit (``sync=False``), so a power cut can lose the last moments.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import threading
from pathlib import Path
from typing import Any

import lmdb
import orjson

from serving.store.base import FUTURE_SKEW_US, RecordOutcome, StoreUnavailable, admit
from serving.store.events import Events, compact, merge
from serving.store.spec import EntitySpec

MAP_SIZE = 1 << 36
"""64 GiB of address space (a sparse file; only what is written takes disk)."""

# LMDB allows one environment per file per process: stores opened on the same folder share it.
_OPEN: dict[str, list] = {}
_OPEN_LOCK = threading.Lock()


def _acquire(path: Path, map_size: int) -> lmdb.Environment:
    key = str(path.resolve())
    with _OPEN_LOCK:
        if key in _OPEN:
            _OPEN[key][1] += 1
            return _OPEN[key][0]
        env = lmdb.open(key, map_size=map_size, max_dbs=4, sync=False, metasync=False, readahead=False, max_readers=512)
        _OPEN[key] = [env, 1]
        return env


def _release(path: Path) -> None:
    key = str(path.resolve())
    with _OPEN_LOCK:
        held = _OPEN.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _OPEN[key]
            held[0].close()


class EmbeddedStore:
    """Entity events in an LMDB environment at ``path``."""

    def __init__(self, path: Path, skew_us: int = FUTURE_SKEW_US, map_size: int = MAP_SIZE) -> None:
        self.url = f"embedded:{path}"
        self._skew_us = skew_us
        self._path = path
        self._closed = False
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._env = _acquire(path, map_size)
        except (OSError, lmdb.Error) as exc:
            raise StoreUnavailable(f"the embedded online store {path} cannot be opened: {exc}") from exc
        self._events = self._env.open_db(b"events")
        self._meta = self._env.open_db(b"meta")

    @staticmethod
    def _key(spec: EntitySpec, key: str) -> bytes:
        return f"{spec.name}\x00{key}".encode()

    def read(self, spec: EntitySpec, keys: Sequence[str]) -> dict[str, Events]:
        try:
            with self._env.begin(db=self._events, buffers=True) as txn:
                return {k: Events.decode(bytes(v) if (v := txn.get(self._key(spec, k))) is not None else None, spec)
                        for k in keys}
        except lmdb.Error as exc:
            raise StoreUnavailable(f"the embedded online store {self.url} cannot be read: {exc}") from exc

    def record(self, spec: EntitySpec, rows: Iterable[tuple[str, tuple[Any, ...]]], *, replace: bool = False,
               check: bool = True, read: dict[str, Events] | None = None) -> RecordOutcome:
        del read  # a local transaction reads again for nothing, and sees every other writer's events
        by_key: dict[str, list[tuple[Any, ...]]] = {}
        for key, row in rows:
            by_key.setdefault(key, []).append(row)
        try:
            with self._env.begin(write=True) as txn:
                newest_known = _int_or_none(txn.get(f"newest:{spec.name}".encode(), db=self._meta))
                held = {key: Events.decode(txn.get(self._key(spec, key), db=self._events), spec) for key in by_key}
                accepted, stale, implausible = admit(held, by_key, newest_known, spec, self._skew_us) if check \
                    else (by_key, 0, 0)
                newest_after, recorded, duplicates = newest_known, 0, 0
                for key, rows_of_key in accepted.items():
                    events, changed = merge(held[key], rows_of_key, replace=replace)
                    recorded, duplicates = recorded + changed, duplicates + len(rows_of_key) - changed
                    if changed:
                        txn.put(self._key(spec, key), compact(events, spec).encode(), db=self._events)
                        newest_after = max(t for t in (newest_after, events.newest()) if t is not None)
                if newest_after != newest_known:
                    txn.put(f"newest:{spec.name}".encode(), str(newest_after).encode(), db=self._meta)
        except lmdb.Error as exc:
            raise StoreUnavailable(f"the embedded online store {self.url} cannot be written: {exc}") from exc
        return RecordOutcome(recorded, duplicates, stale, implausible)

    def scan(self, spec: EntitySpec) -> Iterator[tuple[str, Events]]:
        """Every key of ``spec``'s entity with its events (to copy a store into another)."""
        prefix = self._key(spec, "")
        with self._env.begin(db=self._events) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    yield key[len(prefix):].decode(), Events.decode(value, spec)

    def meta(self, name: str) -> Any:
        with self._env.begin(db=self._meta) as txn:
            value = txn.get(name.encode())
        return None if value is None else orjson.loads(value)

    def set_meta(self, name: str, value: Any) -> None:
        with self._env.begin(write=True, db=self._meta) as txn:
            txn.put(name.encode(), orjson.dumps(value))

    def ping(self) -> None:
        try:
            self._env.stat()
        except lmdb.Error as exc:
            raise StoreUnavailable(f"the embedded online store {self.url} is not usable: {exc}") from exc

    def entities(self) -> int:
        """How many entity keys the store holds (all entities)."""
        with self._env.begin() as txn:
            return int(txn.stat(self._events)["entries"])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release(self._path)


def _int_or_none(value: bytes | None) -> int | None:
    return None if value is None else int(value)
