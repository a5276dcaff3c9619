"""What the online store holds for an entity, as declared in dbt (``meta.entity_state`` on the
state model) and carried by every bundle that reads it.

An entity's events are kept as columns: the event key, the event time (int64 microseconds since
1970-01-01 UTC) and the raw fields the state SQL reads. Events older than the longest window are
dropped, except what the unbounded aggregates need (``keep``): the latest event, or the latest per
value of a field, so ``max(event_at) over (... unbounded preceding ...)`` still sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.errors import BundleError

DAY_US = 86_400_000_000


@dataclass(frozen=True)
class KeepRule:
    """Which events older than the window the store keeps."""

    by: str | None = None
    """None: the latest event; a field: the latest event for each value of it."""

    def to_json(self) -> dict[str, Any]:
        return {"latest": True} if self.by is None else {"latest_by": self.by}


@dataclass(frozen=True)
class EntitySpec:
    """One entity whose state serving computes from its recent events."""

    name: str
    """Entity name, e.g. ``user``; the store's namespace."""
    relation: str
    """The relation serving registers the events as (the serving SQL reads it)."""
    key: str
    """Raw field that identifies the entity; its value's text is the store key."""
    event_key: str
    """Raw field that identifies an event: it is recorded once per key."""
    time: str
    """Raw timestamp field: when the event happened."""
    fields: tuple[str, ...]
    """Other raw fields the state SQL reads."""
    window_days: float
    """Longest window the state SQL looks back over."""
    keep: tuple[KeepRule, ...] = ()
    """What is kept of older events, for the aggregates over all history."""

    @property
    def window_us(self) -> int:
        return int(self.window_days * DAY_US)

    @property
    def stored(self) -> tuple[str, ...]:
        """Every raw field an event holds: event key, time, then ``fields`` (the key is the index)."""
        return (self.event_key, self.time, *self.fields)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "relation": self.relation, "key": self.key, "event_key": self.event_key,
                "time": self.time, "fields": list(self.fields), "window_days": self.window_days,
                "keep": [k.to_json() for k in self.keep]}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> EntitySpec:
        try:
            keep = []
            for rule in data.get("keep") or []:
                if rule.get("latest") is True and len(rule) == 1:
                    keep.append(KeepRule())
                elif set(rule) == {"latest_by"} and isinstance(rule["latest_by"], str):
                    keep.append(KeepRule(rule["latest_by"]))
                else:
                    raise ValueError(f"keep rule {rule!r}: expected {{latest: true}} or {{latest_by: <raw field>}}")
            spec = cls(name=str(data["name"]), relation=str(data["relation"]), key=str(data["key"]),
                       event_key=str(data["event_key"]), time=str(data["time"]),
                       fields=tuple(str(f) for f in data.get("fields") or ()), window_days=float(data["window_days"]),
                       keep=tuple(keep))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: entity_state needs name, relation, key, event_key, time, fields, window_days "
                              f"and keep rules; {exc}") from exc
        unknown = [r.by for r in spec.keep if r.by is not None and r.by not in spec.stored]
        if unknown:
            raise BundleError(f"{where}: entity_state {spec.name!r} keeps the latest event by {unknown}, which are not "
                              f"among its fields {list(spec.stored)}")
        if spec.window_days <= 0:
            raise BundleError(f"{where}: entity_state {spec.name!r}: window_days must be positive")
        return spec
