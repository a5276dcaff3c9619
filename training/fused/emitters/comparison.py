"""Comparisons: = <> < <= > >=, BETWEEN, IN (a list of constants), for numbers, timestamps and
strings against constants. Numbers compare in their common type (an INTEGER and a DECIMAL as
DECIMALs, anything with a DOUBLE as DOUBLEs) with DuckDB's NaN order: NaN = NaN, NaN above all.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import folding, numeric
from training.fused.emitters import Construct
from training.fused.emitters.logic import logic
from training.fused.types import BOOLEAN, TIMESTAMP, VARCHAR, micros, supertype
from training.fused.values import Bool, Const, IntText, Num, Str, Value, type_of

_KINDS = {exp.EQ: "EQ", exp.NEQ: "NEQ", exp.LT: "LT", exp.LTE: "LTE", exp.GT: "GT", exp.GTE: "GTE"}
_FLIPPED = {"EQ": "EQ", "NEQ": "NEQ", "LT": "GT", "LTE": "GTE", "GT": "LT", "GTE": "LTE"}
_NODES = {"EQ": "Equal", "NEQ": "Equal", "LT": "Less", "LTE": "LessOrEqual", "GT": "Greater", "GTE": "GreaterOrEqual"}


def compare(c: Any, op: str, left: Value, right: Value, sql: str) -> Value:
    if isinstance(left, Const) and isinstance(right, Const):
        return Const(_fold(op, left, right, sql), BOOLEAN)
    if isinstance(left, Const) and isinstance(right, (Str, IntText)):
        left, right, op = right, left, _FLIPPED[op]
    if isinstance(left, Str) and isinstance(right, Const) and right.value is None:
        return Const(None, BOOLEAN)
    if (isinstance(left, Str) and left.cleaned and isinstance(right, Const) and isinstance(right.value, str)
            and op in ("EQ", "NEQ")):
        c.codes.position(left, right.value)  # the constant joins the field's codes
        left = c.coded(left)
    if (folded := c.elementwise(lambda a, b: compare(c, op, a, b, sql), [left, right])) is not None:
        return folded
    if isinstance(left, Str):
        if not isinstance(right, Const) or not isinstance(right.value, str) or op not in ("EQ", "NEQ"):
            raise FusedCompileError(f"string comparison must be = or <> against a constant: {sql}")
        hit = c.codes.equals(left, right.value)
        return Bool(c.op("Not", [hit]) if op == "NEQ" else hit, c.null_mask(left), left.unsure)
    if isinstance(left, IntText):
        return _int_text(c, op, left, right, sql)
    a, b = c.num(left, sql), c.num(right, sql)
    if (a.type == TIMESTAMP) != (b.type == TIMESTAMP):
        raise FusedCompileError(f"{sql}: cannot compare {a.type} with {b.type}")
    if a.type != TIMESTAMP:
        common = supertype(a.type, b.type, sql)
        a, b = numeric.convert(c, a, common, sql), numeric.convert(c, b, common, sql)
    unsure = [a.unsure, b.unsure]
    for constant, other in ((left, b), (right, a)):  # DuckDB compares integers exactly; float64 cannot past 2**53
        if isinstance(constant, Const) and numeric.inexact_constant(constant.value, other.type):
            unsure.append(numeric.past_exact(c, other))
    value = numeric.nan_order_compare(c, op, a, b)
    return Bool(value, c.any([a.null, b.null]), c.any(unsure))


def _fold(op: str, left: Const, right: Const, sql: str) -> Any:
    if left.value is None or right.value is None:
        return None
    lt, rt = type_of(left), type_of(right)
    if lt == VARCHAR or rt == VARCHAR:
        if lt != rt:
            raise FusedCompileError(f"{sql}: cannot compare {lt} with {rt}")
        return folding.compare(op, left.value, right.value)
    if lt == TIMESTAMP or rt == TIMESTAMP:
        return folding.compare(op, micros(left.value), micros(right.value))
    common = supertype(lt, rt, sql)
    return folding.compare(op, folding.cast(left.value, lt, common), folding.cast(right.value, rt, common))


def _int_text(c: Any, op: str, left: IntText, right: Value, sql: str) -> Value:
    """CAST(n AS VARCHAR) = '42': the number equals 42; a constant that is not an integer's
    canonical digits ('042', 'x') never equals it."""
    if not isinstance(right, Const) or not isinstance(right.value, str) or op not in ("EQ", "NEQ"):
        raise FusedCompileError(f"an integer cast to text compares = or <> against a constant: {sql}")
    n = left.number
    try:
        k = int(right.value)
        canonical = str(k) == right.value
    except ValueError:
        canonical = False
    if not canonical:
        return Bool(c.g.const([op == "NEQ"], "bool"), n.null, n.unsure)
    return compare(c, op, n, Const(k, supertype(n.type, n.type, sql)), sql)


def _comparison(c: Any, node: exp.Expression, e: Any) -> Value:
    return compare(c, _KINDS[type(node)], e(node.this), e(node.expression), node.sql("duckdb"))


def _between(c: Any, node: exp.Between, e: Any) -> Value:
    sql = node.sql("duckdb")
    x = e(node.this)
    return logic(c, "And", compare(c, "GTE", x, e(node.args["low"]), sql), compare(c, "LTE", x, e(node.args["high"]), sql),
                 sql)


def _in(c: Any, node: exp.In, e: Any) -> Value:
    sql = node.sql("duckdb")
    if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
        raise FusedCompileError(f"IN (subquery) is not supported: {sql}")
    left = e(node.this)
    result: Value = Const(False, BOOLEAN)
    for item in node.expressions:
        result = logic(c, "Or", result, compare(c, "EQ", left, e(item), sql), sql)
    return result


CONSTRUCTS = (
    Construct("comparison", "= <> < <= > >= (numbers, timestamps; strings = and <> against constants)",
              tuple(_KINDS), _comparison,
              grammar=(("bool", "({num} = {num})"), ("bool", "({num} <> {num})"), ("bool", "({num} < {num})"),
                       ("bool", "({num} <= {num})"), ("bool", "({num} > {num})"), ("bool", "({num} >= {num})"),
                       ("bool", "({int} = {intlit})"), ("bool", "({str} = {text})"), ("bool", "({str} <> {text})"),
                       ("bool", "({ts} < {ts})"), ("bool", "({ts} >= {ts})"))),
    Construct("between", "x BETWEEN a AND b", (exp.Between,), _between,
              grammar=(("bool", "({num} between {num} and {num})"), ("bool", "({int} not between {lit} and {lit})"))),
    Construct("in", "x IN (constants)", (exp.In,), _in,
              grammar=(("bool", "({num} in ({lit}, {lit}, {lit}))"), ("bool", "({int} in ({intlit}, NULL))"),
                       ("bool", "({str} in ({text}, {text}))"), ("bool", "({str} not in ({text}))"))),
)
