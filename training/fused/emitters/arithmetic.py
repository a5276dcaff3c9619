"""Arithmetic: + - * / and unary minus, ABS, FLOOR, CEIL, ROUND, in DuckDB's types.

INTEGER and DECIMAL arithmetic is exact in DuckDB (and an error on overflow); the graph computes
it in float64, exact up to 2**53, and marks rows past that unsure. ``/`` is always DOUBLE
division: ``x / 0`` is ``±inf`` and ``0 / 0`` NaN, as IEEE (and DuckDB) give.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

from onnx import TensorProto
from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import folding, numeric
from training.fused.emitters import Construct
from training.fused.types import DOUBLE, FLOAT, INTEGER, SqlType, arithmetic_type
from training.fused.values import Const, Facts, Num, Value, ceil_bound, floor_bound, type_of

_OPS = {exp.Add: "Add", exp.Sub: "Sub", exp.Mul: "Mul", exp.Div: "Div"}


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """Bounds after float64 rounding: one step outward."""
    return math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)


def fold(op: str, a: Const, b: Const, kind: SqlType) -> Const:
    if a.value is None or b.value is None:
        return Const(None, kind)
    if kind.kind == "decimal" and op == "Mul":
        value = decimal.Decimal(a.value) * decimal.Decimal(b.value)
        return Const(folding.arith("Add", value, decimal.Decimal(0), kind), kind)
    operand = DOUBLE if op == "Div" else kind
    x, y = folding.cast(a.value, a.type, operand), folding.cast(b.value, b.type, operand)
    return Const(folding.arith(op, x, y, kind), kind)


def arith(c: Any, op: str, a: Value, b: Value, sql: str) -> Value:
    kind = arithmetic_type(op, type_of(a), type_of(b), sql)
    if isinstance(a, Const) and isinstance(b, Const):
        return fold(op, a, b, kind)
    if (folded := c.elementwise(lambda x, y: arith(c, op, x, y, sql), [a, b])) is not None:
        return folded
    x, y = c.num(a, sql), c.num(b, sql)
    if kind.kind in ("double", "float"):
        x, y = numeric.convert(c, x, DOUBLE, sql), numeric.convert(c, y, DOUBLE, sql)
    elif kind.kind == "decimal":
        if op == "Mul":  # scaled product: the scales add, as the type's do
            x = numeric.convert(c, x, _decimal_like(x.type), sql)
            y = numeric.convert(c, y, _decimal_like(y.type), sql)
        else:
            x = numeric.convert(c, x, SqlType("decimal", precision=38, scale=kind.scale), sql)
            y = numeric.convert(c, y, SqlType("decimal", precision=38, scale=kind.scale), sql)
    value = c.op(op, [x.value, y.value], op.lower())
    xf, yf = x.facts, y.facts
    if op == "Div":
        if yf.excludes(0.0) and xf.finite and yf.finite:
            quotients = [p / q for p in (xf.lo, xf.hi) for q in (yf.lo, yf.hi)]
            lo, hi = _widen(min(quotients), max(quotients))
        else:
            lo, hi = -math.inf, math.inf
    else:
        lo, hi = bounds = numeric.bounds(op, xf, yf)
        lo, hi = _widen(*bounds) if kind.kind in ("double", "float") else bounds
    facts = Facts(lo, hi, may_nan=numeric.nan_possible(op, xf, yf),
                  integral=kind.kind == "integer" or (op != "Div" and xf.integral and yf.integral),
                  nan_is_null=(x.null is None or xf.nan_is_null) and (y.null is None or yf.nan_is_null))
    if kind.kind == "decimal":  # facts of a DECIMAL are of its SQL value, not the scaled integer
        facts = Facts(*numeric.bounds(op, xf, yf), may_nan=False, integral=False, nan_is_null=facts.nan_is_null)
    out = Num(value, c.any([x.null, y.null]), kind, facts, c.any([x.unsure, y.unsure]))
    if kind == FLOAT:
        value = c.op("Cast", [c.op("Cast", [value], "f32", to=TensorProto.FLOAT)], "f64", to=TensorProto.DOUBLE)
        out = Num(value, out.null, FLOAT, Facts(-math.inf, math.inf, True, False, out.facts.nan_is_null), out.unsure)
    return numeric.checked(c, out) if kind.exact else out


def _decimal_like(t: SqlType) -> SqlType:
    return t if t.kind == "decimal" else SqlType("decimal", precision=19, scale=0)


def _binary(c: Any, node: exp.Binary, e: Any) -> Value:
    if isinstance(node, exp.Add) and (counted := indicator_sum(c, node, e)) is not None:
        return counted
    return arith(c, _OPS[type(node)], e(node.this), e(node.expression), node.sql("duckdb"))


def negate(c: Any, v: Value, sql: str) -> Value:
    kind = type_of(v)
    if isinstance(v, Const):
        return Const(folding.negate(v.value, kind), kind)
    if (folded := c.elementwise(lambda x: negate(c, x, sql), [v])) is not None:
        return folded
    n = c.num(v, sql)
    f = n.facts
    out = Num(c.op("Neg", [n.value]), n.null, n.type, Facts(-f.hi, -f.lo, f.may_nan, f.integral, f.nan_is_null), n.unsure)
    return numeric.checked(c, out) if n.type.exact else out


def _neg(c: Any, node: exp.Neg, e: Any) -> Value:
    return negate(c, e(node.this), node.sql("duckdb"))


def unary(c: Any, name: str, v: Value, sql: str) -> Value:
    """ABS, FLOOR, CEIL of a number, in its own type (FLOOR/CEIL of an integer is a DOUBLE)."""
    kind = type_of(v)
    if not kind.numeric or kind.kind == "boolean":
        raise FusedCompileError(f"{sql}: {name.upper()} needs a number, got {kind}")
    if kind.kind == "integer" and name in ("Floor", "Ceil"):
        kind = DOUBLE
    if isinstance(v, Const):
        if v.value is None:
            return Const(None, kind)
        x = folding.cast(v.value, v.type, kind)
        if name == "Abs":
            return Const(folding.negate(x, kind) if x < 0 else x, kind)
        if kind.kind == "decimal":
            rounding = decimal.ROUND_FLOOR if name == "Floor" else decimal.ROUND_CEILING
            return Const(decimal.Decimal(x).quantize(decimal.Decimal(1), rounding=rounding), SqlType("decimal", precision=kind.precision, scale=0))
        return Const(float(math.floor(x) if name == "Floor" else math.ceil(x)) if math.isfinite(x) else x, kind)
    if (folded := c.elementwise(lambda x: unary(c, name, x, sql), [v])) is not None:
        return folded
    n = c.num(v, sql)
    if n.type != kind:
        n = numeric.convert(c, n, kind, sql)
    f = n.facts
    if name == "Abs":
        lo = 0.0 if f.lo <= 0 <= f.hi else min(abs(f.lo), abs(f.hi))
        out = Num(c.op("Abs", [n.value]), n.null, kind, Facts(lo, max(abs(f.lo), abs(f.hi)), f.may_nan, f.integral,
                                                                  f.nan_is_null), n.unsure)
        return numeric.checked(c, out) if kind.exact else out
    if kind.kind == "decimal":
        value = _decimal_floor_ceil(c, n.value, kind.scale, name)
        return Num(value, n.null, SqlType("decimal", precision=kind.precision, scale=0),
                   Facts(floor_bound(f.lo), ceil_bound(f.hi), False, True, f.nan_is_null), n.unsure)
    value = c.op(name, [n.value])
    return Num(value, n.null, kind, Facts(floor_bound(f.lo), ceil_bound(f.hi), f.may_nan, True, f.nan_is_null), n.unsure)


def _decimal_floor_ceil(c: Any, x: str, scale: int, name: str) -> str:
    """FLOOR/CEIL of a scaled integer, exactly in int64."""
    if scale == 0:
        return x
    g = c.g
    as_int = c.op("Cast", [x], "as_int", to=TensorProto.INT64)
    d = g.i64(10 ** scale)
    q = c.op("Div", [as_int, d])  # truncates toward zero
    r = c.op("Sub", [as_int, c.op("Mul", [q, d])])
    if name == "Floor":
        q = c.op("Sub", [q, c.op("Cast", [c.op("Less", [r, g.i64(0)])], "neg", to=TensorProto.INT64)])
    else:
        q = c.op("Add", [q, c.op("Cast", [c.op("Greater", [r, g.i64(0)])], "pos", to=TensorProto.INT64)])
    return c.op("Cast", [q], "as_double", to=TensorProto.DOUBLE)


def _unary(c: Any, node: exp.Expression, e: Any) -> Value:
    name = {exp.Abs: "Abs", exp.Floor: "Floor", exp.Ceil: "Ceil"}[type(node)]
    if node.args.get("decimals") is not None:
        raise FusedCompileError(f"{node.sql('duckdb')}: {name.upper()} with decimals is not supported")
    return unary(c, name, e(node.this), node.sql("duckdb"))


def round_value(c: Any, v: Value, places: int, sql: str) -> Value:
    """DuckDB's ROUND: DOUBLE halves away from zero (C's round) at ``places``; integers and
    DECIMALs exactly, halves away from zero (an integer to places >= 0 is itself)."""
    kind = type_of(v)
    exact = kind.kind in ("integer", "decimal")
    scale = kind.scale if kind.kind == "decimal" else 0
    target = kind if kind.kind == "integer" else SqlType("decimal", precision=kind.precision, scale=max(0, min(scale, places)))
    if exact and places >= scale:
        return v
    if isinstance(v, Const):
        if v.value is None or not exact:
            return Const(folding.round_double(v.value, places), DOUBLE)
        step = decimal.Decimal(1).scaleb(-places)
        rounded = decimal.Decimal(v.value).quantize(step, rounding=decimal.ROUND_HALF_UP)
        value = int(rounded) if kind.kind == "integer" else rounded.quantize(decimal.Decimal(1).scaleb(-target.scale))
        if kind.kind == "integer":
            low, high = kind.integer_range()
            value = value if low <= value <= high else folding.ERROR
        return Const(value, target)
    if (folded := c.elementwise(lambda x: round_value(c, x, places, sql), [v])) is not None:
        return folded
    n = c.num(v, sql)
    g = c.g
    f = n.facts
    if exact:
        value = numeric.rescale_int(c, n.value, scale - places)
        if places < 0:  # back to units: round(15, -1) is 20
            value = c.op("Mul", [value, g.f64(10.0 ** -places)])
        bound = max(abs(f.lo), abs(f.hi)) + 10.0 ** max(-places, 0)
        out = Num(value, n.null, target, Facts(-bound, bound, False, True, False), n.unsure)
        return numeric.checked(c, out)
    x = numeric.convert(c, n, DOUBLE, sql).value
    if places == 0:
        value = numeric.round_half_away(c, x)
    else:
        modifier = 10.0 ** abs(places)
        scaled = c.op("Mul" if places > 0 else "Div", [x, g.f64(modifier)])
        rounded = c.op("Div" if places > 0 else "Mul", [numeric.round_half_away(c, scaled), g.f64(modifier)])
        bad = c.op("Or", [c.op("IsInf", [rounded]), c.op("IsNaN", [rounded])])
        value = c.op("Where", [bad, x if places > 0 else g.f64(0.0), rounded], "round")
    # places < 0 turns a NaN (a NULL's encoding too) into 0, so NULL then needs its mask.
    return Num(value, n.null, DOUBLE, Facts(f.lo - abs(f.lo) - 1, f.hi + abs(f.hi) + 1, f.may_nan, places <= 0,
                                            f.nan_is_null and places >= 0), n.unsure)


def _round(c: Any, node: exp.Round, e: Any) -> Value:
    places = 0
    decimals = node.args.get("decimals")
    if decimals is not None:
        value = e(decimals)
        if not isinstance(value, Const) or not isinstance(value.value, int) or abs(value.value) > 300:
            raise FusedCompileError(f"ROUND needs constant integer decimals: {node.sql('duckdb')}")
        places = value.value
    return round_value(c, e(node.this), places, node.sql("duckdb"))


def indicator_sum(c: Any, node: exp.Add, e: Any) -> Value | None:
    """``cast(x >= c1 as integer) + cast(x >= c2 as integer) + ...`` (a bucket number) as one
    comparison of x against all the constants and a sum, instead of three nodes per term.
    None when the expression has another shape; the generic path compiles it then."""
    terms: list[exp.Expression] = []
    stack: list[exp.Expression] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, exp.Paren):
            stack.append(n.this)
        elif isinstance(n, exp.Add):
            stack += [n.expression, n.this]
        else:
            terms.append(n)
    integer = (exp.DataType.Type.INT,)
    kinds = {exp.GT: "Greater", exp.GTE: "GreaterOrEqual", exp.LT: "Less", exp.LTE: "LessOrEqual"}
    if len(terms) < 3 or not all(isinstance(t, exp.Cast) and t.to.this in integer and type(t.this) in kinds
                                 for t in terms):
        return None
    if len({type(t.this) for t in terms}) != 1 or len({t.this.this.sql("duckdb") for t in terms}) != 1:
        return None
    x = e(terms[0].this.this)
    bounds = [e(t.this.expression) for t in terms]
    if (not isinstance(x, Num) or x.type.kind != "double" or x.facts.may_nan
            or not all(isinstance(b, Const) and b.type.numeric and b.type.kind != "boolean" and b.value is not None
                       and math.isfinite(float(b.value)) for b in bounds)):
        return None
    g = c.g
    column = c.op("Unsqueeze", [x.value, g.i64([1])], "as_column")
    hits = c.op(kinds[type(terms[0].this)], [column, g.const([[float(b.value) for b in bounds]], "float64")], "cmp")
    counted = c.op("ReduceSum", [c.op("Cast", [hits], "num", to=TensorProto.DOUBLE), g.i64([1])], "count", keepdims=0)
    return Num(counted, x.null, INTEGER, Facts(0.0, float(len(terms)), False, True, False), x.unsure)


CONSTRUCTS = (
    Construct("arithmetic", "+ - * /", tuple(_OPS), _binary,
              grammar=(("num", "({num} + {num})"), ("num", "({num} - {num})"), ("num", "({num} * {num})"),
                       ("num", "({num} / {num})"), ("int", "({int} + {int})"), ("int", "({int} - {int})"),
                       ("int", "({int} * {int})"))),
    Construct("negation", "-x", (exp.Neg,), _neg, grammar=(("num", "(-{num})"), ("int", "(-{int})"))),
    Construct("abs, floor, ceil", "ABS, FLOOR, CEIL", (exp.Abs, exp.Floor, exp.Ceil), _unary,
              grammar=(("num", "abs({num})"), ("num", "floor({num})"), ("num", "ceil({num})"), ("int", "abs({int})"))),
    Construct("round", "ROUND(x[, places])", (exp.Round,), _round,
              grammar=(("num", "round({num})"), ("num", "round({num}, {places})"))),
)
