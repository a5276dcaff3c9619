"""Entity state: window aggregates over an entity's events, as masked reductions.

The serving SQL computes each request row's state with window functions over its entity's
events (``macros/features/user_state.sql``). In the graph, row i's events arrive as [N, K]
tensors (its entity's events from the online store plus the request's own records, with a
validity mask; ``serving.entity_state``), and row i itself is the window's current row. So

    count(x) over (partition by key, c order by t range between interval 24 hours preceding
                   and current row exclude group)

becomes ``ReduceSum(valid & c_e = c_i & t_e >= t_i - 24h & t_e < t_i & x_e is not null)``: the
partition by the entity key is the grouping the runtime did, the frame ends strictly before the
row (EXCLUDE GROUP), and anything else is refused. Supported: COUNT, SUM of integers and
DECIMALs (exact; a DOUBLE sum depends on the order of addition), MAX and MIN; frames RANGE from
an interval or UNBOUNDED PRECEDING to CURRENT ROW EXCLUDE GROUP; further partition columns
compared as DuckDB compares them (text by its string code; two unseen texts that differ only
by cleanup are unsure rows, scored by the SQL path).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto
from sqlglot import exp

from serving.bundle import InputField
from serving.entity_state import VALID, events_input
from serving.store.spec import EntitySpec
from training.errors import FusedCompileError
from training.fused import numeric
from training.fused.codes import CODE_EMPTY, CODE_OTHER
from training.fused.emitters import Construct
from training.fused.scope import ROW_ID, Scope
from training.fused.types import TIMESTAMP, SqlType
from training.fused.values import Bool, Facts, Num, Str, Value

_UNITS_US = {"MICROSECOND": 1, "MILLISECOND": 1_000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
             "HOUR": 3_600_000_000, "DAY": 86_400_000_000, "WEEK": 7 * 86_400_000_000}


@dataclass(frozen=True)
class StateContext:
    """The select computing entity state: its entity, the timeline's columns for the row itself
    (row space) and over the entity's events (event space), and its named windows."""

    spec: EntitySpec
    alias: str
    probe: Scope
    events: Scope
    key_columns: frozenset[str]
    """Timeline columns that are the entity key (the runtime groups the events by it)."""
    windows: dict[str, exp.Window]
    valid: str


def is_state_select(select: exp.Expression) -> bool:
    return isinstance(select, exp.Select) and select.find(exp.Window) is not None


def _events_source(c: Any, select: exp.Select, where: str) -> tuple[str, exp.Select | None]:
    """The entity events relation the state select reads, and the CTE in between (if any)."""
    from_ = (select.args.get("from_") or select.args.get("from")).this
    if not isinstance(from_, exp.Table):
        raise FusedCompileError(f"{where}: window functions must read an entity's events relation")
    if from_.name in c.entities:
        return from_.name, None
    inner = c.scopes.ctes.get(from_.name)
    if isinstance(inner, exp.Select) and not inner.args.get("joins") and not inner.args.get("where"):
        source = (inner.args.get("from_") or inner.args.get("from")).this
        if isinstance(source, exp.Table) and source.name in c.entities:
            return source.name, inner
    window = select.find(exp.Window)
    raise FusedCompileError(f"{where}: Window {window.sql('duckdb')[:80] if window else ''} is not compiled: window "
                            f"functions are compiled over an entity's events relation "
                            f"({', '.join(sorted(c.entities)) or 'none declared'}), read directly or through one CTE")


_TEXT = {exp.DataType.Type.VARCHAR: "varchar", exp.DataType.Type.TEXT: "text"}
_KEY_CASTS = {"integer": {**_TEXT, exp.DataType.Type.BIGINT: "bigint", exp.DataType.Type.INT128: "hugeint"}}
"""Casts of a raw entity key that keep its grouping (one value per key, never an error), by the
key's raw type: to text, and an integer key (a BIGINT) to BIGINT or HUGEINT too."""


def _key_columns(spec: EntitySpec, events_select: exp.Select | None, key_type: str) -> frozenset[str]:
    """Timeline columns that equal the raw entity key or a cast of it that keeps its grouping
    (``_KEY_CASTS``): the runtime's grouping."""
    if events_select is None:
        return frozenset({spec.key})
    keys = set()
    for projection in events_select.expressions:
        node = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(node, exp.Cast) and node.to.this in _KEY_CASTS.get(key_type, _TEXT):
            node = node.this
        if isinstance(node, exp.Column) and node.name == spec.key:
            keys.add(projection.alias_or_name)
    return frozenset(keys)


def state_scope(c: Any, select: exp.Select, where: str) -> Scope:
    relation, events_select = _events_source(c, select, where)
    spec: EntitySpec = c.entities[relation]
    fields = c.fields
    if spec.key not in fields:
        raise FusedCompileError(f"{where}: entity {spec.name!r} is keyed by {spec.key!r}, which is not a raw input "
                                "field; declare it in the dbt source or fix meta.entity_state.key")

    def stored(name: str) -> Value:
        if name not in spec.stored:
            raise FusedCompileError(f"{where}: the state reads {name!r}, which the online store does not hold for "
                                    f"entity {spec.name!r}; add it to meta.entity_state.fields in dbt")
        return c.input(events_input(spec, name), fields[name], rank=2)

    def no_row_id() -> Value:
        raise FusedCompileError(f"{where}: stored events have no {ROW_ID}; it identifies request rows only")

    raw_events = Scope({**{n: (lambda n=n: stored(n)) for n in fields}, ROW_ID: no_row_id})
    request = c.scopes.of("request")
    if events_select is not None:
        probe = c.scopes.select(events_select, f"{where} (the row itself)", {relation: request})
        events = c.scopes.select(events_select, f"{where} (its events)", {relation: raw_events})
    else:
        probe, events = request, raw_events
    valid = c.input(events_input(spec, VALID), InputField(VALID, "boolean", False), rank=2)
    alias = (select.args.get("from_") or select.args.get("from")).this.alias_or_name
    ctx = StateContext(spec, alias, probe, events, _key_columns(spec, events_select, fields[spec.key].type),
                       {w.name: w for w in select.args.get("windows") or []}, valid.value)  # type: ignore[union-attr]
    out = Scope()
    for projection in select.expressions:
        if isinstance(projection, exp.Star):
            raise FusedCompileError(f"{where}: SELECT * in the state select is not supported")
        node = projection.this if isinstance(projection, exp.Alias) else projection
        out.columns[projection.alias_or_name] = (lambda node=node: _in_state(c, ctx, node, where))
    return out


def _in_state(c: Any, ctx: StateContext, node: exp.Expression, where: str) -> Value:
    with _context(c, ctx):
        return c.expr(node, {ctx.alias: ctx.probe}, ctx.alias, where)


@contextlib.contextmanager
def _context(c: Any, ctx: StateContext) -> Iterator[None]:
    saved = getattr(c, "state_context", None)
    c.state_context = ctx
    try:
        yield
    finally:
        c.state_context = saved


def _frame(node: exp.Window, ctx: StateContext, sql: str) -> tuple[list[exp.Expression], exp.Expression, int | None]:
    """(partition expressions, order expression, frame width in microseconds or None for unbounded)."""
    spec = node
    if node.args.get("alias") is not None and not node.args.get("spec") and not node.args.get("partition_by"):
        spec = ctx.windows.get(node.args["alias"].name) or node
    partition = list(spec.args.get("partition_by") or [])
    order = spec.args.get("order")
    frame = spec.args.get("spec")
    if not partition or order is None or len(order.expressions) != 1 or frame is None:
        raise FusedCompileError(f"{sql}: an entity state window needs PARTITION BY, one ORDER BY and a frame")
    if (str(frame.args.get("kind", "")).upper() != "RANGE" or str(frame.args.get("start_side", "")).upper() != "PRECEDING"
            or str(frame.args.get("end", "")).upper() != "CURRENT ROW" or str(frame.args.get("exclude", "")).upper() != "GROUP"):
        raise FusedCompileError(f"{sql}: only RANGE BETWEEN <interval> | UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP "
                                "frames are compiled (strictly earlier events)")
    start = frame.args.get("start")
    if str(start).upper() == "UNBOUNDED":
        width = None
    elif isinstance(start, exp.Interval):
        unit = str(start.args.get("unit").name if start.args.get("unit") else "").upper().rstrip("S")
        if unit not in _UNITS_US or not isinstance(start.this, exp.Literal):
            raise FusedCompileError(f"{sql}: window interval {start.sql('duckdb')}: only fixed units "
                                    f"({', '.join(u.lower() for u in _UNITS_US)}) are compiled")
        width = int(float(start.this.this) * _UNITS_US[unit])
    else:
        raise FusedCompileError(f"{sql}: window frame start {start} is not compiled")
    return partition, order.expressions[0].this, width


def _partition_equal(c: Any, ev: Value, pv: Value, sql: str) -> tuple[str, str | None]:
    """bool [N, K]: the event's value is in the row's partition (NULLs together, as DuckDB
    partitions), and where that cannot be decided exactly (unsure)."""
    g = c.g
    if isinstance(ev, Str) and isinstance(pv, Str):
        if (ev.trim, ev.case, ev.nullif_empty) != (pv.trim, pv.case, pv.nullif_empty):
            raise FusedCompileError(f"{sql}: the partition column is cleaned differently for events and the row")
        raw_equal = c.op("Equal", [ev.raw, pv.raw], "same_text")
        if not ev.cleaned:
            if not ev.nullif_empty:
                return raw_equal, None
            null_e, null_p = c.null_mask(ev), c.null_mask(pv)
            return c.op("Or", [raw_equal, c.op("And", [null_e, null_p])]), None
        c.codes.link(ev, pv)
        ce, cp = c.codes.code(ev), c.codes.code(pv)
        same_code = c.op("Equal", [ce, cp])
        other_e = c.op("Equal", [ce, g.i64(CODE_OTHER)])
        both_other = c.op("And", [other_e, c.op("Equal", [cp, g.i64(CODE_OTHER)])])
        equal = c.op("Or", [c.op("And", [same_code, c.op("Not", [other_e])]), c.op("And", [both_other, raw_equal])])
        if ev.nullif_empty:  # '' is NULL after NULLIF, in one partition with NULL
            null_e = c.op("LessOrEqual", [ce, g.i64(CODE_EMPTY)])
            null_p = c.op("LessOrEqual", [cp, g.i64(CODE_EMPTY)])
            equal = c.op("Or", [equal, c.op("And", [null_e, null_p])])
        return equal, c.op("And", [both_other, c.op("Not", [raw_equal])], "unsure_partition")
    if isinstance(ev, Num) and isinstance(pv, Num) and ev.type == pv.type and not ev.facts.may_nan:
        equal = c.op("Equal", [ev.value, pv.value])
        if ev.null is not None and pv.null is not None:
            equal = c.op("Or", [c.op("And", [equal, c.op("Not", [ev.null])]), c.op("And", [ev.null, pv.null])])
        return equal, c.any([ev.unsure, pv.unsure])
    raise FusedCompileError(f"{sql}: partition columns of entity state must be text or numbers of one type")


def _any_over_events(c: Any, mask: str) -> str:
    """bool [N]: some event of the row has ``mask`` set."""
    g = c.g
    count = g.op("ReduceMax", [g.op("Cast", [mask], "num", to=TensorProto.DOUBLE), g.i64([1])], "any", keepdims=0)
    return g.op("Greater", [count, g.f64(0.0)], "some")


def _window(c: Any, node: exp.Window, e: Any) -> Value:
    sql = node.sql("duckdb")
    ctx: StateContext | None = getattr(c, "state_context", None)
    if ctx is None:
        raise FusedCompileError(f"{sql}: window functions are compiled only over an entity's events")
    partition, order, width = _frame(node, ctx, sql)
    g = c.g
    first = partition[0]
    if not (isinstance(first, exp.Column) and first.name in ctx.key_columns):
        which = ", ".join(sorted(ctx.key_columns)) or (
            f"no column of the events' CTE is the raw key {ctx.spec.key!r} as it is or cast to "
            f"{' or '.join(_KEY_CASTS.get(c.fields[ctx.spec.key].type, _TEXT).values())}")
        raise FusedCompileError(f"{sql}: an entity state window is partitioned by the entity key first "
                                f"({which}), the online store's grouping")
    events = {ctx.alias: ctx.events}
    probe = {ctx.alias: ctx.probe}
    te = c.num(c.expr(order, events, ctx.alias, sql), sql)
    tp = c.num(c.expr(order, probe, ctx.alias, sql), sql)
    if te.type != TIMESTAMP or tp.type != TIMESTAMP:
        raise FusedCompileError(f"{sql}: entity state windows are ordered by the event time (a timestamp)")
    if tp.null is not None:
        raise FusedCompileError(f"{sql}: the event time {ctx.spec.time!r} is nullable; declare it not_null in the "
                                "dbt source so every event has a place in the window")
    mask = c.op("And", [ctx.valid, c.op("Less", [te.value, tp.value], "before")])
    if width is not None:
        mask = c.op("And", [mask, c.op("GreaterOrEqual", [te.value, c.op("Sub", [tp.value, g.i64(width)])], "in_window")])
    unsure = [te.unsure, tp.unsure]
    for column in partition[1:]:
        equal, doubtful = _partition_equal(c, c.expr(column, events, ctx.alias, sql), c.expr(column, probe, ctx.alias, sql), sql)
        unsure.append(c.op("And", [mask, doubtful]) if doubtful else None)
        mask = c.op("And", [mask, equal])
    return _aggregate(c, node.this, mask, [u for u in unsure if u], events, ctx, sql)


def _aggregate(c: Any, agg: exp.Expression, mask: str, unsure: list[str], events: dict[str, Scope],
               ctx: StateContext, sql: str) -> Value:
    g = c.g
    axes = g.i64([1])
    if isinstance(agg, exp.Count):
        arg = agg.this
        if isinstance(arg, exp.Distinct):
            raise FusedCompileError(f"{sql}: COUNT(DISTINCT ...) over entity events is not compiled")
        contributing = mask if isinstance(arg, exp.Star) else _contributing(c, c.expr(arg, events, ctx.alias, sql), mask,
                                                                             unsure, sql)
        count = g.op("Cast", [g.op("ReduceSum", [g.op("Cast", [contributing], "num", to=TensorProto.INT64), axes],
                                   "count", keepdims=0)], "count", to=TensorProto.DOUBLE)
        return Num(count, None, SqlType("integer", bits=64), Facts(0.0, math.inf, False, True, True), _unsure(c, unsure))
    if not isinstance(agg, (exp.Sum, exp.Max, exp.Min)):
        raise FusedCompileError(f"{sql}: {type(agg).__name__} over entity events is not compiled (COUNT, SUM, MAX, MIN are)")
    x = c.num(c.expr(agg.this, events, ctx.alias, sql), sql)
    contributing = _contributing(c, x, mask, unsure, sql)
    none = g.op("Not", [_any_over_events(c, contributing)], "no_event")
    if isinstance(agg, exp.Sum):
        if x.type.kind not in ("integer", "decimal"):
            raise FusedCompileError(f"{sql}: SUM of {x.type} over entity events depends on the order of addition; "
                                    "cast it to DECIMAL (exact) as the bank state does")
        total = g.op("ReduceSum", [c.op("Where", [contributing, x.value, g.f64(0.0)]), axes], "sum", keepdims=0)
        kind = SqlType("decimal", precision=38, scale=x.type.scale) if x.type.kind == "decimal" else \
            SqlType("integer", bits=128)
        out = Num(total, none, kind, Facts(-math.inf, math.inf, False, kind.kind == "integer", False), _unsure(c, unsure))
        return numeric.checked(c, out)
    if x.facts.may_nan:
        raise FusedCompileError(f"{sql}: MAX/MIN of a value that can be NaN over entity events is not compiled")
    op = "ReduceMax" if isinstance(agg, exp.Max) else "ReduceMin"
    if x.type == TIMESTAMP:
        fill = g.i64(np.iinfo(np.int64).min if op == "ReduceMax" else np.iinfo(np.int64).max)
    else:
        fill = g.f64(-math.inf if op == "ReduceMax" else math.inf)
    extreme = g.op(op, [c.op("Where", [contributing, x.value, fill]), axes], "extreme", keepdims=0)
    return Num(extreme, none, x.type, Facts(x.facts.lo, x.facts.hi, False, x.facts.integral, False), _unsure(c, unsure))


def _contributing(c: Any, x: Value, mask: str, unsure: list[str], sql: str) -> str:
    """The events that count: in the frame, and not NULL (aggregates skip NULLs). DuckDB computes
    an aggregate's argument for every row of the relation, in a frame or not, so an event where
    it is unsure (would raise) makes the row unsure, wherever the event lies."""
    null = c.null_mask(x)
    if (doubt := c.unsure_of(x)) is not None:
        unsure.append(c.op("And", [c.state_context.valid, doubt]))
    return mask if null is None else c.op("And", [mask, c.op("Not", [null])])


def _unsure(c: Any, masks: list[str]) -> str | None:
    """Rows where some event is undecided: the SQL path scores them. DuckDB computes the window
    over the whole relation before any CASE or COALESCE around it looks at the row, so these
    count whatever the expression does with the aggregate (``c.eager_unsure``)."""
    event_masks = [m for m in masks if m in c.events]
    row_masks = [m for m in masks if m not in c.events]
    found = [_any_over_events(c, c.any(event_masks))] if event_masks else []
    unsure = c.any(found + row_masks)
    if unsure is not None:
        c.eager_unsure.append(unsure)
    return unsure


CONSTRUCTS = (
    Construct("entity state windows", "COUNT, SUM (integers, DECIMAL), MAX, MIN OVER (PARTITION BY <entity key>, ... ORDER BY "
              "<event time> RANGE BETWEEN <interval> | UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP) over an "
              "entity's events", (exp.Window,), _window),
)
