"""Entity state at request time: the events of a request's entities, from the online store and
from the request itself, in the shapes the two feature paths read.

For a record of entity e at time t the state is what the dbt state SQL gives over e's events
that the system knows (landed, materialized, and scored by any server since) plus the request's
own records, strictly before t. The SQL path registers them as the bundle's events relation
(one row per event, the raw input fields, ``__row_id`` set on the request's own rows); the fused
graph takes them as ``[N, K]`` tensors, row i holding its entity's events, with a validity mask.
No state is computed here: both paths run the state SQL (or its compiled form) over these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from serving.bundle import InputField
from serving.errors import FieldProblem, InputValidationError
from serving.fused import INT64_NULL, STRING_NULL
from serving.request import ROW_ID, Request
from serving.schema import arrow_schema
from serving.store import EntitySpec, Events, OnlineStore, RecordOutcome, StoreUnavailable, check_fields

_EPOCH = dt.datetime(1970, 1, 1)
_MICROSECOND = dt.timedelta(microseconds=1)
VALID = "__valid"
MIN_WIDTH = 16
"""The narrowest [N, K] event input (padding is masked out by validity)."""


def events_input(spec: EntitySpec, field: str) -> str:
    """The fused graph's input holding ``field`` of each row's entity events."""
    return f"{spec.relation}__{field}"


def _micros(value: dt.datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


@dataclass
class Gathered:
    """One entity's events for one request."""

    spec: EntitySpec
    keys: list[str | None]
    """Each record's store key (the text of its entity key), None without one."""
    rows: list[tuple[Any, ...]]
    """Each record as an event: (event key, time in microseconds, fields...)."""
    held: dict[str, Events]
    """The store's events per key, without those the request re-sends."""
    read: dict[str, Events]
    """The store's events per key, as read."""
    members: dict[str | None, list[int]]
    """The request's records per key."""


class EntityState:
    """Reads, shapes and records the entity state of requests for one bundle."""

    def __init__(self, specs: Sequence[EntitySpec], schema: Sequence[InputField], store: OnlineStore) -> None:
        self.specs = tuple(specs)
        self.store = store
        self._schema = tuple(schema)
        self._arrow = arrow_schema(schema)
        self._unchecked = list(self.specs)
        try:
            self._check()
        except StoreUnavailable:
            pass  # checked at the first request: a server starts while its store is down, and is not ready

    def _check(self) -> None:
        """Refuse a store whose layout for an entity differs (``StoreSchemaError``), once per entity."""
        while self._unchecked:
            check_fields(self.store, self._unchecked[0])
            self._unchecked.pop(0)

    def distinct(self, request: Request) -> tuple[np.ndarray, np.ndarray] | None:
        """(first row of each event, each row's event) when the request sends an event twice, else
        None. A re-sent event is one event: scored once, with the same state, counted once. Two
        records with one event key and different values are refused (``InputValidationError``):
        which one is the event cannot be decided, and neither is silently dropped."""
        if request.num_rows == 1:
            return None
        keys = list(zip(*(request.values(s.event_key) for s in self.specs)))
        if len(set(keys)) == len(keys):
            return None
        first: dict[tuple[Any, ...], int] = {}
        rows = request.table.drop_columns([ROW_ID]).to_pylist()
        problems = []
        for i, k in enumerate(keys):
            j = first.setdefault(k, i)
            if j != i and rows[j] != rows[i]:
                differ = sorted(name for name in rows[i] if rows[i][name] != rows[j][name])
                problems.append(FieldProblem(i, self.specs[0].event_key,
                                             f"re-sends the event of record {j} ({k[0]!r}) with other values in {differ}"))
        if problems:
            raise InputValidationError(problems)
        order = sorted(first.values())
        position = {row: j for j, row in enumerate(order)}
        return np.asarray(order, dtype=np.int64), np.asarray([position[first[k]] for k in keys], dtype=np.int64)

    def gather(self, request: Request) -> list[Gathered]:
        self._check()
        out = []
        for spec in self.specs:
            keys = [None if k is None else str(k) for k in request.values(spec.key)]
            columns = [request.values(name) for name in spec.stored]
            times = [_micros(t) for t in columns[1]]
            rows = [(k, t, *rest) for k, t, *rest in zip(columns[0], times, *columns[2:])]
            members: dict[str | None, list[int]] = {}
            for i, k in enumerate(keys):
                members.setdefault(k, []).append(i)
            wanted = [k for k in members if k is not None]
            read = self.store.read(spec, wanted) if wanted else {}
            held = dict(read)
            resent = {r[0] for r in rows}  # event keys as typed: the store holds them as the request sends them
            for k, events in held.items():
                if not resent.isdisjoint(events.keys):
                    held[k] = events.take([i for i, e in enumerate(events.keys) if e not in resent])
            out.append(Gathered(spec, keys, rows, held, read, members))
        return out

    def record(self, gathered: list[Gathered]) -> RecordOutcome:
        """Write the request's records into the store (idempotent by event key)."""
        outcome = RecordOutcome()
        for g in gathered:
            seen: set[str] = set()
            rows = []
            for key, row in zip(g.keys, g.rows):
                if key is None or row[0] is None or row[1] is None or str(row[0]) in seen:
                    continue
                seen.add(str(row[0]))
                rows.append((key, row))
            outcome = outcome + self.store.record(g.spec, rows, read=g.read)
        return outcome

    # ---- the SQL path

    def tables(self, request: Request, gathered: list[Gathered]) -> dict[str, pa.Table]:
        """Each events relation: the held events, then the request's records (first per event key)."""
        out = {}
        request_columns = {name: request.values(name) for name in [*(f.name for f in self._schema), ROW_ID]}
        for g in gathered:
            position = {name: j for j, name in enumerate(g.spec.stored)}
            columns: dict[str, list[Any]] = {f.name: [] for f in self._schema}
            held_rows = 0
            for key, events in g.held.items():
                typed = request_columns[g.spec.key][g.members[key][0]]
                for name, values in columns.items():
                    if name == g.spec.key:
                        values.extend([typed] * len(events))
                    elif name == g.spec.time:
                        values.extend(_EPOCH + dt.timedelta(microseconds=v) for v in events.times)
                    elif name in position:
                        values.extend(events.column(position[name]))
                    else:
                        values.extend([None] * len(events))
                held_rows += len(events)
            first: dict[str, int] = {}
            for i, event_key in enumerate(request_columns[g.spec.event_key]):
                first.setdefault(str(event_key), i)
            mine = sorted(first.values())
            for name, values in columns.items():
                column = request_columns[name]
                values.extend(column[i] for i in mine)
            row_ids = [None] * held_rows + [request_columns[ROW_ID][i] for i in mine]
            arrays = [pa.array(columns[f.name], type=self._arrow.field(f.name).type) for f in self._schema]
            arrays.append(pa.array(row_ids, type=pa.int64()))
            out[g.spec.relation] = pa.Table.from_arrays(arrays, schema=self._arrow.append(pa.field(ROW_ID, pa.int64())))
        return out

    # ---- the fused path

    def feeds(self, gathered: list[Gathered], inputs: Sequence[str]) -> dict[str, np.ndarray]:
        """The fused graph's [N, K] event inputs that it declares (``inputs``)."""
        types = {f.name: f.type for f in self._schema}
        out: dict[str, np.ndarray] = {}
        for g in gathered:
            # Column by column: row i's events are its entity's held events, then the request's
            # records of that entity (the graph's frame keeps only those strictly before row i).
            held = [g.held.get(key) if key is not None else None for key in g.keys]
            mine = [g.members[key] for key in g.keys]
            counts = [(len(h) if h is not None else 0) + len(m) for h, m in zip(held, mine)]
            # Widths in powers of two: ONNX Runtime plans memory per input shape, and a new K each
            # request cost about 12 ms of planning where a repeated one costs nothing.
            width = max(MIN_WIDTH, 1 << (max(counts, default=1) - 1).bit_length())
            valid = np.arange(width)[None, :] < np.asarray(counts)[:, None]
            if events_input(g.spec, VALID) in inputs:
                out[events_input(g.spec, VALID)] = valid
            for position, name in enumerate(g.spec.stored):
                if position == 0 or events_input(g.spec, name) not in inputs:
                    continue
                kind = "timestamp" if name == g.spec.time else types[name]
                values = [(h.column(position) if h is not None else []) + [g.rows[j][position] for j in m]
                          for h, m in zip(held, mine)]
                out[events_input(g.spec, name)] = _column(values, kind, width)
        return out


_PADDING: dict[str, tuple[Any, Any]] = {
    "string": (STRING_NULL, object), "integer": (INT64_NULL, np.int64), "timestamp": (INT64_NULL, np.int64),
    "double": (np.nan, np.float64), "boolean": (False, np.bool_),
}
"""Each kind's NULL (which also pads) and dtype in the fused graph's encoding."""


def _column(values: list[list[Any]], kind: str, width: int) -> np.ndarray:
    """Padded [N, K] values in the fused graph's encoding (padding is masked out by validity).
    Built as one padded list per row and one conversion: a row is one entity's few dozen events."""
    null, dtype = _PADDING[kind]
    rows = []
    for row in values:
        if None in row:
            row = [null if v is None else v for v in row]
        rows.append(row + [null] * (width - len(row)))
    return np.array(rows, dtype=dtype)
