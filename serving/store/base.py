"""The online store's interface, shared by the embedded store (LMDB) and Redis.

A store maps (entity, key) to that entity's recent events. Servers read the events of a
request's entities before scoring and record the scored events after (write-through); the
pipeline's ``materialize`` stage records landed events (replacing served copies, since landed
data is the truth) and remembers which landing partitions it loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from serving.store.events import Events
from serving.store.spec import EntitySpec

FUTURE_SKEW_US = 86_400_000_000
"""An event more than this ahead of everything the store knows is implausible (not recorded)."""


class StoreUnavailable(ConnectionError):
    """The online store cannot be reached; serving answers 503 rather than score on empty state."""


class StoreSchemaError(ValueError):
    """The store holds an entity with other fields than a bundle needs."""


@dataclass(frozen=True)
class RecordOutcome:
    """What recording a batch of events did."""

    recorded: int = 0
    """Events written (new, or changed by a replacing write)."""
    duplicates: int = 0
    """Events already held under their key (a re-sent event counts once)."""
    stale: int = 0
    """Older than the entity's window before its newest event: not written."""
    implausible: int = 0
    """Further ahead than the skew allows past the entity's (or the store's) newest event: not written."""

    def __add__(self, other: RecordOutcome) -> RecordOutcome:
        return RecordOutcome(self.recorded + other.recorded, self.duplicates + other.duplicates,
                             self.stale + other.stale, self.implausible + other.implausible)


class OnlineStore(Protocol):
    """Entity events by key. Implementations are safe to share between threads and processes."""

    url: str

    def read(self, spec: EntitySpec, keys: Sequence[str]) -> dict[str, Events]:
        """The events held for each key (missing keys: none)."""

    def record(self, spec: EntitySpec, rows: Iterable[tuple[str, tuple[Any, ...]]], *, replace: bool = False,
               check: bool = True, read: dict[str, Events] | None = None) -> RecordOutcome:
        """Record ``(key, (event key, time, fields...))`` rows, idempotent by event key. ``replace``:
        rows replace held copies (materialize). ``check``: refuse stale and implausible events.
        ``read``: these keys' events as ``read`` gave them moments ago (write-through after
        scoring); a store that pays a round trip per read may record against them instead of
        reading again. The writes stay idempotent by event key either way."""

    def meta(self, name: str) -> Any:
        """A value the store keeps about itself (materialized partitions, fields per entity)."""

    def set_meta(self, name: str, value: Any) -> None: ...

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be reached."""

    def close(self) -> None: ...


def admit(held: dict[str, Events], rows: dict[str, list[tuple[Any, ...]]], newest_known: int | None,
          spec: EntitySpec, skew_us: int) -> tuple[dict[str, list[tuple[Any, ...]]], int, int]:
    """The rows that may be recorded, and how many are stale and implausible.

    Stale: older than the entity's window before its newest event (its state could not be
    exact, and compaction would drop it at once). Implausible: further ahead than ``skew_us`` of
    every event known, the entity's and the store's (one event in year 2100 would otherwise
    push the entity's window past all its real events). Rows are judged in time order, each
    accepted one moving the horizon, so a batch replaying a week in order is recorded whole."""
    horizon = newest_known
    for events in held.values():
        if (newest := events.newest()) is not None:
            horizon = newest if horizon is None else max(horizon, newest)
    ordered = sorted(((row[1], key, i) for key, group in rows.items() for i, row in enumerate(group)),
                     key=lambda x: (x[0], x[1], x[2]))
    accepted: dict[str, list[tuple[Any, ...]]] = {key: [] for key in rows}
    stale = implausible = 0
    for time, key, i in ordered:
        newest = held[key].newest() if key in held else None
        if newest is not None and time < newest - spec.window_us:
            stale += 1
        elif horizon is not None and time > horizon + skew_us:
            implausible += 1
        else:
            accepted[key].append(rows[key][i])
            horizon = time if horizon is None else max(horizon, time)
    return accepted, stale, implausible


def check_fields(store: OnlineStore, spec: EntitySpec) -> None:
    """Refuse a store that holds ``spec``'s entity with other fields (it would mix layouts)."""
    held = store.meta(f"fields:{spec.name}")
    wanted = list(spec.stored)
    if held is None:
        store.set_meta(f"fields:{spec.name}", wanted)
    elif held != wanted:
        raise StoreSchemaError(
            f"the online store {store.url} holds entity {spec.name!r} with fields {held}, but this model reads "
            f"{wanted}; rebuild the store from landed data: delete it and run `python orchestrate.py --only materialize`")
