"""An entity's events as columns, and compaction: the store's bounded memory.

``Events`` holds one entity's events: ``keys`` (event keys), ``times`` (int64 microseconds) and
one list per field. ``compact`` drops events older than the window before the newest one (plus a
slack for late events), except those a keep rule names. Both stores (LMDB, Redis) use these.

Compaction runs at most once per ``COMPACT_EVERY_US`` of an entity's time (the events remember
when, ``compacted_to``): the kept old events would otherwise make every write-through scan all
events again. Holding a few more events than needed never changes a state, since the state SQL
reads its windows itself; it only costs their bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from serving.store.spec import EntitySpec

SLACK_US = 86_400_000_000
"""Late events up to a day behind the entity's newest one still see their whole window."""
COMPACT_EVERY_US = 86_400_000_000
"""An entity is compacted again once its cutoff has moved this far (a day) since the last time."""


@dataclass
class Events:
    """One entity's events, column by column, in no particular order."""

    keys: list[Any] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    fields: list[list[Any]] = field(default_factory=list)
    compacted_to: int | None = None
    """The cutoff of the last compaction (None: not known to have been compacted)."""

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def empty(cls, spec: EntitySpec) -> Events:
        return cls([], [], [[] for _ in spec.fields])

    @classmethod
    def decode(cls, data: bytes | None, spec: EntitySpec) -> Events:
        if not data:
            return cls.empty(spec)
        keys, times, *columns = orjson.loads(data)
        mark = columns.pop() if len(columns) > len(spec.fields) else None  # written since compaction marks
        return cls(keys, times, columns, mark)

    def encode(self) -> bytes:
        if self.compacted_to is None:
            return orjson.dumps([self.keys, self.times, *self.fields])
        return orjson.dumps([self.keys, self.times, *self.fields, self.compacted_to])

    def column(self, position: int) -> list[Any]:
        """The values of ``spec.stored[position]``: 0 the event keys, 1 the times, then the fields."""
        return self.keys if position == 0 else self.times if position == 1 else self.fields[position - 2]

    def row(self, i: int) -> tuple[Any, ...]:
        return (self.keys[i], self.times[i], *(c[i] for c in self.fields))

    def append(self, row: tuple[Any, ...]) -> None:
        self.keys.append(row[0])
        self.times.append(row[1])
        for column, value in zip(self.fields, row[2:]):
            column.append(value)

    def copy(self) -> Events:
        return Events(list(self.keys), list(self.times), [list(c) for c in self.fields], self.compacted_to)

    def take(self, indices: list[int]) -> Events:
        return Events([self.keys[i] for i in indices], [self.times[i] for i in indices],
                      [[c[i] for i in indices] for c in self.fields], self.compacted_to)

    def newest(self) -> int | None:
        return max(self.times) if self.times else None


def merge(current: Events, rows: list[tuple[Any, ...]], *, replace: bool) -> tuple[Events, int]:
    """``current`` plus ``rows`` (event key, time, fields...); an event already held by key is
    kept as it is, or replaced by the new row with ``replace`` (landed data corrects served).
    Returns the events and how many rows were new or changed."""
    changed = 0
    if not replace:  # write-through: only whether a key is held matters, one set lookup per row
        held = set(map(str, current.keys))
        for row in rows:
            if (key := str(row[0])) not in held:
                held.add(key)
                current.append(row)
                changed += 1
        return current, changed
    position = {str(k): i for i, k in enumerate(current.keys)}
    for row in rows:
        at = position.get(str(row[0]))
        if at is None:
            position[str(row[0])] = len(current)
            current.append(row)
            changed += 1
        elif current.row(at) != row:
            current.times[at] = row[1]
            for column, value in zip(current.fields, row[2:]):
                column[at] = value
            changed += 1
    return current, changed


def compact(events: Events, spec: EntitySpec) -> Events:
    """Events inside the window (and its slack) before the newest one, plus what ``spec.keep`` keeps."""
    newest = events.newest()
    if newest is None:
        return events
    cutoff = newest - spec.window_us - SLACK_US
    if events.compacted_to is not None and cutoff - events.compacted_to < COMPACT_EVERY_US:
        return events
    if min(events.times) >= cutoff:
        events.compacted_to = cutoff
        return events
    old = [i for i, t in enumerate(events.times) if t < cutoff]
    kept = set(i for i, t in enumerate(events.times) if t >= cutoff)
    index = {name: j for j, name in enumerate(spec.fields)}
    for rule in spec.keep:
        latest: dict[Any, int] = {}
        for i in old:
            value = None if rule.by is None else (events.keys[i] if rule.by == spec.event_key else
                                                  events.times[i] if rule.by == spec.time else events.fields[index[rule.by]][i])
            if value not in latest or events.times[i] > events.times[latest[value]] or (
                    events.times[i] == events.times[latest[value]] and str(events.keys[i]) > str(events.keys[latest[value]])):
                latest[value] = i
        kept.update(latest.values())
    out = events.take(sorted(kept))
    out.compacted_to = cutoff
    return out
