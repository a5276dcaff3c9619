"""Conditionals: CASE (searched and simple), IF/IIF, COALESCE, NULLIF, GREATEST, LEAST.

DuckDB evaluates a CASE branch only on the rows that take it, so a branch's unsure rows (where
it would raise) count only where it is taken: ``case when x > 0 then ln(x) else 0 end`` is sure
everywhere. GREATEST/LEAST ignore NULL arguments; NaN is the greatest value.
"""

from __future__ import annotations

import math
from typing import Any

from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import folding, numeric
from training.fused.emitters import Construct
from training.fused.emitters.comparison import compare
from training.fused.types import BOOLEAN, NULL, supertype
from training.fused.values import Bool, Coded, Const, Facts, ListLookup, Num, Str, Value, type_of


def _common(values: list[Value], sql: str) -> Any:
    kind = NULL
    for v in values:
        kind = supertype(kind, type_of(v), sql)
    return kind


def _to(c: Any, v: Value, kind: Any, sql: str) -> Value:
    if kind.kind in ("boolean", "null"):
        return v
    if isinstance(v, Const):
        return Const(folding.cast(v.value, type_of(v), kind) if v.value is not None else None, kind)
    if isinstance(v, Coded):
        return c.elementwise(lambda x: _to(c, x, kind, sql), [v]) or numeric.convert(c, c.num(v, sql), kind, sql)
    return numeric.convert(c, c.num(v, sql), kind, sql)


def _pick(c: Any, take: str, a: Value, b: Value, sql: str) -> Value:
    """``take ? a : b`` for values of one type (numbers or booleans)."""
    if isinstance(a, (Bool,)) or isinstance(b, Bool) or type_of(a) == BOOLEAN or type_of(b) == BOOLEAN:
        x, y = c.boolean(a, sql), c.boolean(b, sql)
        # ONNX Runtime has no Where for bool tensors: booleans are picked with And/Or.
        value = c.op("Or", [c.op("And", [take, x.value]), c.op("And", [c.op("Not", [take]), y.value])])
        null = _pick_mask(c, take, x.null, y.null)
        return Bool(value, null, _pick_unsure(c, take, x.unsure, y.unsure))
    x, y = c.num(a, sql), c.num(b, sql)
    value = c.op("Where", [take, x.value, y.value], "case")
    fx, fy = x.facts, y.facts
    facts = Facts(min(fx.lo, fy.lo), max(fx.hi, fy.hi), fx.may_nan or fy.may_nan, fx.integral and fy.integral,
                  (x.null is None or fx.nan_is_null) and (y.null is None or fy.nan_is_null))
    return Num(value, _pick_mask(c, take, x.null, y.null), x.type, facts, _pick_unsure(c, take, x.unsure, y.unsure))


def _pick_mask(c: Any, take: str, a: str | None, b: str | None) -> str | None:
    if a is None and b is None:
        return None
    a_part = c.op("And", [take, a]) if a else None
    b_part = c.op("And", [c.op("Not", [take]), b]) if b else None
    return c.any([a_part, b_part])


_pick_unsure = _pick_mask


def case(c: Any, branches: list[tuple[exp.Expression, exp.Expression]], default: exp.Expression | None,
         e: Any, sql: str) -> Value:
    values = [e(then) for _, then in branches] + [e(default) if default is not None else Const(None, NULL)]
    if any(isinstance(v, (Str, ListLookup)) for v in values):
        raise FusedCompileError(f"CASE returning text or lists is not supported: {sql}")
    kind = _common(values, sql)
    values = [_to(c, v, kind, sql) for v in values]
    result = values[-1]
    for (condition, _), value in zip(reversed(branches), reversed(values[:-1])):
        cond = e(condition)
        if isinstance(cond, Const):
            if cond.value is folding.ERROR:
                raise FusedCompileError(f"{sql}: DuckDB raises an error for this condition on every row")
            result = value if cond.value else result
            continue
        if (folded := c.elementwise(lambda k, a, b: a if k.value is True else b, [cond, value, result])) is not None:
            result = folded
            continue
        b = c.boolean(cond, sql)
        take = b.value if b.null is None or b.false_when_null else c.op("And", [b.value, c.op("Not", [b.null])])
        picked = _pick(c, take, value, result, sql)
        result = _with_unsure(c, picked, b.unsure)
    return result


def _with_unsure(c: Any, v: Value, extra: str | None) -> Value:
    if extra is None:
        return v
    if isinstance(v, Num):
        return Num(v.value, v.null, v.type, v.facts, c.any([v.unsure, extra]))
    if isinstance(v, Bool):
        return Bool(v.value, v.null, c.any([v.unsure, extra]), v.false_when_null)
    return v


def _case(c: Any, node: exp.Expression, e: Any) -> Value:
    sql = node.sql("duckdb")
    if isinstance(node, exp.If):
        return case(c, [(node.this, node.args["true"])], node.args.get("false"), e, sql)
    if node.this is not None:  # CASE x WHEN v THEN ...: CASE WHEN x = v
        return case(c, [(exp.EQ(this=node.this, expression=w.this), w.args["true"]) for w in node.args["ifs"]],
                    node.args.get("default"), e, sql)
    return case(c, [(w.this, w.args["true"]) for w in node.args["ifs"]], node.args.get("default"), e, sql)


def coalesce(c: Any, values: list[Value], sql: str) -> Value:
    if isinstance(values[0], ListLookup):
        if all(isinstance(v, Const) and v.value == () for v in values[1:]):
            return values[0]  # a missing list is an empty list for list_contains
        raise FusedCompileError(f"COALESCE of a list is only supported with []: {sql}")
    if any(isinstance(v, (Str, ListLookup)) for v in values):
        raise FusedCompileError(f"COALESCE of text is not supported: {sql}")
    kind = _common(values, sql)
    values = [_to(c, v, kind, sql) for v in values]
    if (folded := c.elementwise(lambda *cs: next((x for x in cs if x.value is not None), cs[-1]), values)) is not None:
        return folded
    result = values[-1]
    for v in reversed(values[:-1]):
        if isinstance(v, Const):
            result = v if v.value is not None else result
            continue
        null = c.null_mask(v)
        if null is None:
            result = v
            continue
        result = _pick(c, c.op("Not", [null]), v, result, sql)
    return result


def _coalesce(c: Any, node: exp.Coalesce, e: Any) -> Value:
    return coalesce(c, [e(node.this), *(e(x) for x in node.expressions)], node.sql("duckdb"))


def nullif(c: Any, value: Value, other: Value, sql: str) -> Value:
    if isinstance(value, Str):
        if isinstance(other, Const) and other.value == "":
            return Str(value.raw, value.raw_null, value.trim, value.case, True, value.unsure)
        raise FusedCompileError(f"NULLIF of text is supported as NULLIF(text, ''): {sql}")
    kind = type_of(value)
    equal = compare(c, "EQ", value, other, sql)
    if isinstance(equal, Const):
        return Const(None, kind) if equal.value is True else value
    if isinstance(value, Const):
        value = Const(value.value, kind)
    if (folded := c.elementwise(lambda v, q: Const(None, kind) if q.value is True else v, [value, equal])) is not None:
        return folded
    n = c.num(value, sql) if not isinstance(value, Bool) else None
    if n is None:
        raise FusedCompileError(f"NULLIF of a boolean is not supported: {sql}")
    q = c.boolean(equal, sql)
    hit = q.value if q.null is None else c.op("And", [q.value, c.op("Not", [q.null])])
    masked = c.op("Where", [hit, c.g.f64(math.nan), n.value], "nullif")  # NaN where NULL, as the matrix wants
    return Num(masked, c.any([n.null, hit]), n.type, Facts(n.facts.lo, n.facts.hi, n.facts.may_nan, n.facts.integral,
                                                          n.null is None or n.facts.nan_is_null),
               c.any([n.unsure, q.unsure]))


def _nullif(c: Any, node: exp.Nullif, e: Any) -> Value:
    return nullif(c, e(node.this), e(node.expression), node.sql("duckdb"))


def extreme(c: Any, op: str, values: list[Value], sql: str) -> Value:
    """GREATEST/LEAST: NULL arguments are ignored (NULL only when all are); NaN is the greatest."""
    if any(isinstance(v, (Str, ListLookup)) for v in values):
        raise FusedCompileError(f"{op.upper()} of text is not supported: {sql}")
    kind = _common(values, sql)
    values = [_to(c, v, kind, sql) for v in values]
    result = values[0]
    for v in values[1:]:
        result = _extreme2(c, op, result, v, sql)
    return result


def _extreme2(c: Any, op: str, a: Value, b: Value, sql: str) -> Value:
    if isinstance(a, Const) and isinstance(b, Const):
        present = [x for x in (a.value, b.value) if x is not None]
        if not present:
            return Const(None, a.type)
        nan = [x for x in present if isinstance(x, float) and math.isnan(x)]
        if nan:
            return Const(math.nan if op == "Max" or len(nan) == len(present) else
                         next(x for x in present if not (isinstance(x, float) and math.isnan(x))), a.type)
        return Const((max if op == "Max" else min)(present), a.type)
    if (folded := c.elementwise(lambda x, y: _extreme2(c, op, x, y, sql), [a, b])) is not None:
        return folded
    x, y = c.num(a, sql), c.num(b, sql)
    value = c.op(op, [x.value, y.value])
    if x.facts.may_nan or y.facts.may_nan:  # ONNX Max/Min leave NaN to the implementation
        nan_x, nan_y = c.op("IsNaN", [x.value]), c.op("IsNaN", [y.value])
        if op == "Max":
            value = c.op("Where", [c.op("Or", [nan_x, nan_y]), c.g.f64(math.nan), value])
        else:
            value = c.op("Where", [nan_x, y.value, c.op("Where", [nan_y, x.value, value])])
    if y.null:
        value = c.op("Where", [y.null, x.value, value])
    if x.null:
        value = c.op("Where", [x.null, y.value, value])
    fx, fy = x.facts, y.facts
    lo, hi = (max(fx.lo, fy.lo), max(fx.hi, fy.hi)) if op == "Max" else (min(fx.lo, fy.lo), min(fx.hi, fy.hi))
    if x.null or y.null:  # one side may be NULL and ignored: the other side's bounds alone
        lo, hi = min(lo, fx.lo, fy.lo), max(hi, fx.hi, fy.hi)
    null = c.op("And", [x.null, y.null]) if x.null and y.null else None
    facts = Facts(lo, hi, fx.may_nan or fy.may_nan, fx.integral and fy.integral,
                  null is None or (fx.nan_is_null and fy.nan_is_null))
    return Num(value, null, x.type, facts, c.any([x.unsure, y.unsure]))


def _extreme(c: Any, node: exp.Expression, e: Any) -> Value:
    return extreme(c, "Max" if isinstance(node, exp.Greatest) else "Min",
                   [e(node.this), *(e(x) for x in node.expressions)], node.sql("duckdb"))


CONSTRUCTS = (
    Construct("case", "CASE WHEN ... THEN ... [ELSE ...] END, CASE x WHEN ..., IF/IIF (numbers, booleans, NULL)",
              (exp.Case, exp.If), _case,
              grammar=(("num", "(case when {bool} then {num} when {bool} then {num} else {num} end)"),
                       ("num", "(case when {bool} then {num} end)"), ("int", "(case {int} when {intlit} then {int} else {int} end)"),
                       ("num", "(case when {bool} then NULL else {num} end)"), ("bool", "(case when {bool} then {bool} else {bool} end)"))),
    Construct("coalesce", "COALESCE", (exp.Coalesce,), _coalesce,
              grammar=(("num", "coalesce({num}, {num})"), ("num", "coalesce({num}, {num}, {lit})"))),
    Construct("nullif", "NULLIF(x, y) (text: NULLIF(x, ''))", (exp.Nullif,), _nullif,
              grammar=(("num", "nullif({num}, {lit})"), ("num", "({num} / nullif({num}, 0))"), ("int", "nullif({int}, {int})"))),
    Construct("greatest, least", "GREATEST, LEAST", (exp.Greatest, exp.Least), _extreme,
              grammar=(("num", "greatest({num}, {num})"), ("num", "least({num}, {num}, {lit})"), ("int", "greatest({int}, {int})"))),
)
