"""The Redis online store: one hash per entity key (event key -> the event), shared by servers on
several machines. Reads are one round trip for a request's entities (with the store's newest
event time); a write-through after scoring is one more (the writes, judged against the events
the request just read); any other record is two (the held events, then the writes), pipelined.

Redis persists according to its own configuration (AOF ``appendfsync everysec`` by default in
its packaged config is not assumed): acknowledged writes survive a server process kill, since
they live in Redis, not in the serving process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from serving.store.base import FUTURE_SKEW_US, RecordOutcome, StoreUnavailable, admit
from serving.store.events import Events, compact, merge
from serving.store.spec import EntitySpec


MARK_FIELD = b"\xff"
"""The hash field holding the entity's ``compacted_to``: no event key's UTF-8 text is this byte."""


def _decode(mapping: dict[bytes, bytes], spec: EntitySpec) -> Events:
    events = Events.empty(spec)
    if (mark := mapping.pop(MARK_FIELD, None)) is not None:
        events.compacted_to = int(mark)
    for value in mapping.values():
        key, time, *fields = orjson.loads(value)
        events.append((key, time, *fields))
    return events


class RedisStore:
    """Entity events in Redis at ``url`` (``redis://host:port/db``)."""

    def __init__(self, url: str, skew_us: int = FUTURE_SKEW_US, prefix: str = "entity") -> None:
        import redis  # noqa: PLC0415 (only deployments that choose Redis need the client)

        self.url = url
        self._skew_us = skew_us
        self._prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        self._newest: dict[str, int | None] = {}
        """The store's newest event time per entity, as the last read saw it."""

    def _key(self, spec: EntitySpec, key: str) -> str:
        return f"{self._prefix}:{spec.name}:{key}"

    def _newest_name(self, spec: EntitySpec) -> str:
        return f"{self._prefix}:meta:newest:{spec.name}"

    def read(self, spec: EntitySpec, keys: Sequence[str]) -> dict[str, Events]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._newest_name(spec))
            for k in keys:
                pipe.hgetall(self._key(spec, k))
            newest_raw, *found = pipe.execute()
        except self._errors as exc:
            raise StoreUnavailable(f"the Redis online store {self.url} is unreachable: {exc}") from exc
        self._newest[spec.name] = None if newest_raw is None else int(newest_raw)
        return {k: _decode(m, spec) for k, m in zip(keys, found)}

    def record(self, spec: EntitySpec, rows: Iterable[tuple[str, tuple[Any, ...]]], *, replace: bool = False,
               check: bool = True, read: dict[str, Events] | None = None) -> RecordOutcome:
        by_key: dict[str, list[tuple[Any, ...]]] = {}
        for key, row in rows:
            by_key.setdefault(key, []).append(row)
        if not by_key:
            return RecordOutcome()
        newest_name = self._newest_name(spec)
        try:
            if read is not None and spec.name in self._newest and all(key in read for key in by_key):
                # Judged against what the request read: another server's events written since
                # are kept by HSETNX, and compacted away only by a later write.
                newest_known = self._newest[spec.name]
                held = {key: read[key].copy() for key in by_key}
            else:
                pipe = self._redis.pipeline(transaction=False)
                pipe.get(newest_name)
                for key in by_key:
                    pipe.hgetall(self._key(spec, key))
                newest_raw, *held_maps = pipe.execute()
                newest_known = None if newest_raw is None else int(newest_raw)
                held = {key: _decode(mapping, spec) for key, mapping in zip(by_key, held_maps)}
            before = {key: {str(k) for k in events.keys} for key, events in held.items()}
            accepted, stale, implausible = admit(held, by_key, newest_known, spec, self._skew_us) if check \
                else (by_key, 0, 0)
            newest_after, recorded, duplicates = newest_known, 0, 0
            writes = self._redis.pipeline(transaction=False)
            for key, rows_of_key in accepted.items():
                events, changed = merge(held[key], rows_of_key, replace=replace)
                recorded, duplicates = recorded + changed, duplicates + len(rows_of_key) - changed
                if not changed:
                    continue
                marked = events.compacted_to
                kept = compact(events, spec)
                name = self._key(spec, key)
                if kept.compacted_to != marked:
                    writes.hset(name, MARK_FIELD, str(kept.compacted_to))
                # HSETNX keeps a copy another server wrote meanwhile; a replacing write overwrites it.
                for i in range(len(kept)):
                    row = kept.row(i)
                    if replace or str(row[0]) not in before[key]:
                        (writes.hset if replace else writes.hsetnx)(name, str(row[0]), orjson.dumps(list(row)))
                if dropped := before[key] - {str(k) for k in kept.keys}:
                    writes.hdel(name, *dropped)
                newest_after = max(t for t in (newest_after, events.newest()) if t is not None)
            if newest_after is not None and newest_after != newest_known:
                writes.set(newest_name, str(newest_after))
                self._newest[spec.name] = newest_after
            writes.execute()
        except self._errors as exc:
            raise StoreUnavailable(f"the Redis online store {self.url} is unreachable: {exc}") from exc
        return RecordOutcome(recorded, duplicates, stale, implausible)

    def meta(self, name: str) -> Any:
        try:
            value = self._redis.get(f"{self._prefix}:meta:{name}")
        except self._errors as exc:
            raise StoreUnavailable(f"the Redis online store {self.url} is unreachable: {exc}") from exc
        return None if value is None else orjson.loads(value)

    def set_meta(self, name: str, value: Any) -> None:
        try:
            self._redis.set(f"{self._prefix}:meta:{name}", orjson.dumps(value))
        except self._errors as exc:
            raise StoreUnavailable(f"the Redis online store {self.url} is unreachable: {exc}") from exc

    def ping(self) -> None:
        try:
            self._redis.ping()
        except self._errors as exc:
            raise StoreUnavailable(f"the Redis online store {self.url} is unreachable: {exc}") from exc

    def close(self) -> None:
        self._redis.close()
