"""Boolean logic with SQL's three values: AND, OR, NOT, IS [NOT] NULL."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import folding
from training.fused.emitters import Construct
from training.fused.types import BOOLEAN
from training.fused.values import Bool, Coded, Const, Value, type_of


def logic(c: Any, op: str, left: Value, right: Value, sql: str) -> Value:
    if isinstance(left, Const) and isinstance(right, Const):
        return Const(folding.logic(op, _truth(left, sql), _truth(right, sql)), BOOLEAN)
    if (folded := c.elementwise(lambda a, b: logic(c, op, a, b, sql), [left, right])) is not None:
        return folded
    a, b = c.boolean(left, sql), c.boolean(right, sql)
    unsure = c.any([a.unsure, b.unsure])
    value = c.op(op, [a.value, b.value])
    if a.null is None and b.null is None:
        return Bool(value, None, unsure)
    # Three-valued logic: AND is FALSE if either side is a known FALSE, else NULL if any side is NULL.
    decisive = op == "And"

    def settled(v: Bool) -> str:
        side = c.op("Not", [v.value]) if decisive else v.value
        return c.op("And", [side, c.op("Not", [v.null])]) if v.null else side

    any_null = c.any([a.null, b.null])
    decided = c.op("Or", [settled(a), settled(b)])
    return Bool(value, c.op("And", [any_null, c.op("Not", [decided])]), unsure)


def _truth(v: Const, sql: str) -> Any:
    if v.value is None or v.value is folding.ERROR or isinstance(v.value, bool):
        return v.value
    raise FusedCompileError(f"{sql}: expected a boolean, got {type_of(v)}")


def negation(c: Any, inner: Value, sql: str) -> Value:
    if isinstance(inner, Const):
        value = _truth(inner, sql)
        return Const(value if value is None or value is folding.ERROR else not value, BOOLEAN)
    if isinstance(inner, Coded):
        return c.elementwise(lambda x: negation(c, x, sql), [inner]) or inner
    b = c.boolean(inner, sql)
    return Bool(c.op("Not", [b.value]), b.null, b.unsure)


def _and_or(c: Any, node: exp.Expression, e: Any) -> Value:
    return logic(c, "And" if isinstance(node, exp.And) else "Or", e(node.this), e(node.expression), node.sql("duckdb"))


def _not(c: Any, node: exp.Not, e: Any) -> Value:
    return negation(c, e(node.this), node.sql("duckdb"))


def is_null(c: Any, inner: Value) -> Value:
    if isinstance(inner, Const):
        return Const(inner.value is None, BOOLEAN)
    if isinstance(inner, Coded):
        return c.elementwise(lambda x: Const(x.value is None, BOOLEAN), [inner]) or inner
    mask = c.null_mask(inner)
    return Const(False, BOOLEAN) if mask is None else Bool(mask, None, c.unsure_of(inner))


def _is(c: Any, node: exp.Is, e: Any) -> Value:
    if not isinstance(node.expression, exp.Null):
        raise FusedCompileError(f"only IS [NOT] NULL is supported: {node.sql('duckdb')}")
    inner = e(node.this)
    from training.fused.values import Str  # noqa: PLC0415

    if isinstance(inner, Str) and inner.cleaned:
        inner = c.coded(inner)
    return is_null(c, inner)


CONSTRUCTS = (
    Construct("and, or", "AND, OR", (exp.And, exp.Or), _and_or,
              grammar=(("bool", "({bool} and {bool})"), ("bool", "({bool} or {bool})"))),
    Construct("not", "NOT", (exp.Not,), _not, grammar=(("bool", "(not {bool})"),)),
    Construct("is null", "IS [NOT] NULL", (exp.Is,), _is,
              grammar=(("bool", "({num} is null)"), ("bool", "({str} is not null)"), ("bool", "({ts} is null)"))),
)
