"""Numbers on tensors with DuckDB's semantics: conversions between types, exactness, NaN order.

Every number is a float64 tensor; an integer is exact in it up to 2**53 and a DECIMAL is held as
its scaled integer, so both are exact there too. Where a value can pass that, or where DuckDB
would raise an error (integer overflow, a cast out of range), the rows are marked unsure and the
SQL path scores them. ``Facts`` (bounds, NaN, whole numbers) let the compiler prove most checks
unnecessary at compile time, so they cost no node.
"""

from __future__ import annotations

import decimal
import math
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

from training.errors import FusedCompileError
from training.fused.types import DOUBLE, EXACT_LIMIT, FLOAT, SqlType
from training.fused.values import Facts, Num, ceil_bound, floor_bound

if TYPE_CHECKING:
    from training.fused.compiler import Compiler


def _mul(a: float, b: float) -> float:
    if (a == 0 and math.isinf(b)) or (b == 0 and math.isinf(a)):
        return 0.0
    return a * b


def bounds(op: str, a: Facts, b: Facts) -> tuple[float, float]:
    """Interval of ``a <op> b`` (for + - *), before rounding to the result type."""
    if op == "Add":
        return a.lo + b.lo if not (math.isinf(a.lo) and math.isinf(b.lo) and a.lo != b.lo) else -math.inf, \
               a.hi + b.hi if not (math.isinf(a.hi) and math.isinf(b.hi) and a.hi != b.hi) else math.inf
    if op == "Sub":
        return bounds("Add", a, Facts(-b.hi, -b.lo))
    products = [_mul(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]
    return min(products), max(products)


def nan_possible(op: str, a: Facts, b: Facts) -> bool:
    """Can ``a <op> b`` be NaN where neither argument is (inf - inf, 0 * inf, 0 / 0, inf / inf)?"""
    if a.may_nan or b.may_nan:
        return True
    unbounded_a, unbounded_b = math.isinf(a.lo) or math.isinf(a.hi), math.isinf(b.lo) or math.isinf(b.hi)
    if op in ("Add", "Sub"):
        return unbounded_a and unbounded_b
    if op == "Mul":
        return (unbounded_a and b.lo <= 0 <= b.hi) or (unbounded_b and a.lo <= 0 <= a.hi)
    return (a.lo <= 0 <= a.hi and b.lo <= 0 <= b.hi) or (unbounded_a and unbounded_b)


def out_of(c: Compiler, n: Num, lo: float, hi: float, strict: bool = False) -> str | None:
    """Mask of rows whose value lies outside [lo, hi] (or is NaN); None when the facts rule it out."""
    if not n.facts.may_nan and lo <= n.facts.lo and n.facts.hi <= hi:
        return None
    inside = c.op("And", [c.op("GreaterOrEqual", [n.value, c.g.f64(lo)]), c.op("LessOrEqual", [n.value, c.g.f64(hi)])])
    outside = c.op("Not", [inside], "outside")
    return c.op("And", [outside, c.op("Not", [n.null])]) if n.null else outside


def past_exact(c: Compiler, n: Num) -> str | None:
    """Rows whose float64 (the scaled integer for a DECIMAL) is 2**53 or more in magnitude: there a
    comparison with a constant float64 cannot hold exactly (2**53 + 1) may look equal to them."""
    scale = 10.0 ** n.type.scale if n.type.kind == "decimal" else 1.0
    return out_of(c, n.with_facts(lo=n.facts.lo * scale, hi=n.facts.hi * scale), -(EXACT_LIMIT - 1), EXACT_LIMIT - 1)


def inexact_constant(value: object, t: SqlType) -> bool:
    """Whether an integer or DECIMAL constant of type ``t`` is past what float64 holds exactly."""
    if t.kind not in ("integer", "decimal") or value is None or isinstance(value, bool):
        return False
    scaled = decimal.Decimal(str(value)).scaleb(t.scale if t.kind == "decimal" else 0)
    return abs(scaled) >= EXACT_LIMIT


def exact_limit(t: SqlType) -> float:
    """Largest magnitude of the float64 a value of ``t`` is held in that is exact and error-free in DuckDB."""
    # A float64 result of magnitude 2**53 may be the rounding of 2**53 + 1: only below it is exact.
    if t.kind == "integer":
        return min(EXACT_LIMIT - 1, float((1 << (t.bits - 1)) - 1))
    if t.kind == "decimal":
        return min(EXACT_LIMIT - 1, 10.0 ** t.precision - 1)
    return math.inf


def checked(c: Compiler, n: Num) -> Num:
    """``n`` with rows past its type's exact range marked unsure (integer overflow is an error in DuckDB)."""
    limit = exact_limit(n.type)
    if math.isinf(limit):
        return n
    scale = 10.0 ** n.type.scale if n.type.kind == "decimal" else 1.0
    past = out_of(c, n.with_facts(lo=n.facts.lo * scale, hi=n.facts.hi * scale), -limit, limit)
    lo, hi = max(n.facts.lo, -limit / scale), min(n.facts.hi, limit / scale)
    return Num(n.value, n.null, n.type, Facts(lo, hi, may_nan=False, integral=n.facts.integral or n.type.kind == "integer",
                                              nan_is_null=n.facts.nan_is_null), c.any([n.unsure, past]))


def round_half_even(c: Compiler, x: str) -> str:
    return c.op("Round", [x], "round")


def round_half_away(c: Compiler, x: str) -> str:
    """C's ``round``: exact for every double (|x - trunc(x)| is exact)."""
    # The sign of a zero counts (DuckDB's round(-0.0) is -0.0, and 1 / it is -inf), but Sign(-0.0)
    # is 0 and ONNX Runtime's Where gives +0.0 for a selected -0.0; so a zero's sign is Sign(1 / x).
    zero = c.op("Cast", [c.op("Equal", [x, c.g.f64(0.0)])], "is_zero", to=TensorProto.DOUBLE)
    sign = c.op("Add", [c.op("Sign", [x]), c.op("Mul", [zero, c.op("Sign", [c.op("Div", [c.g.f64(1.0), x])])])], "sign")
    magnitude = c.op("Abs", [x])
    whole = c.op("Floor", [magnitude])
    up = c.op("Cast", [c.op("GreaterOrEqual", [c.op("Sub", [magnitude, whole]), c.g.f64(0.5)])], "up",
              to=TensorProto.DOUBLE)
    return c.op("Mul", [sign, c.op("Add", [whole, up])], "round_away")


def rescale_int(c: Compiler, x: str, down: int, half_away: bool = True) -> str:
    """Scaled integer ``x`` divided by 10**down, rounded half away from zero, exactly (in int64)."""
    g = c.g
    as_int = c.op("Cast", [x], "as_int", to=TensorProto.INT64)
    d = g.i64(10 ** down)
    q = c.op("Div", [as_int, d])  # truncates toward zero
    r = c.op("Abs", [c.op("Sub", [as_int, c.op("Mul", [q, d])])])
    away = c.op("Cast", [c.op("GreaterOrEqual", [c.op("Mul", [r, g.i64(2)]), d])], "away", to=TensorProto.INT64)
    sign = c.op("Sign", [as_int])
    return c.op("Cast", [c.op("Add", [q, c.op("Mul", [sign, away])])], "as_double", to=TensorProto.DOUBLE)


def convert(c: Compiler, n: Num, to: SqlType, where: str) -> Num:
    """``CAST(n AS to)`` between numeric types, as DuckDB does it."""
    src = n.type
    if src == to:
        return n
    g = c.g
    f = n.facts
    if src.kind == "boolean":
        raise FusedCompileError(f"{where}: internal: booleans are converted by the cast emitter")
    if to.kind == "double":
        if src.kind == "decimal":  # DuckDB: the integer as a double, divided by 10**scale
            value = c.op("Div", [n.value, g.f64(10.0 ** src.scale)], "as_double") if src.scale else n.value
            return Num(value, n.null, DOUBLE, Facts(f.lo, f.hi, may_nan=False, nan_is_null=f.nan_is_null), n.unsure)
        return Num(n.value, n.null, DOUBLE, Facts(f.lo, f.hi, f.may_nan, f.integral, f.nan_is_null), n.unsure)
    if to == FLOAT:
        as_double = convert(c, n, DOUBLE, where)
        value = c.op("Cast", [c.op("Cast", [as_double.value], "f32", to=TensorProto.FLOAT)], "f64", to=TensorProto.DOUBLE)
        # DuckDB raises where a finite double is past FLOAT's range (the cast would give inf).
        limit = float(np.finfo(np.float32).max)
        overflow = None if -limit <= f.lo and f.hi <= limit else c.op(
            "And", [c.op("IsInf", [value]), c.op("Not", [c.op("IsInf", [as_double.value])])], "overflow")
        return Num(value, n.null, FLOAT, Facts(max(f.lo, -math.inf), min(f.hi, math.inf), f.may_nan, False, f.nan_is_null),
                   c.any([n.unsure, overflow]))
    if to.kind == "integer":
        low, high = to.integer_range()
        if src.kind == "integer":
            bad = out_of(c, n, float(low), float(high))
            return Num(n.value, n.null, to, Facts(max(f.lo, low), min(f.hi, high), False, True, f.nan_is_null),
                       c.any([n.unsure, bad]))
        if src.kind == "decimal":
            value = rescale_int(c, n.value, src.scale) if src.scale else n.value
            # Through int64 a NULL's NaN is lost: the NULL mask has to say where NULL is.
            out = Num(value, n.null, to, Facts(floor_bound(f.lo - 1), ceil_bound(f.hi + 1), False, True,
                                               f.nan_is_null and not src.scale), n.unsure)
            return checked(c, Num(out.value, out.null, to, out.facts, c.any([out.unsure, out_of(c, out, low, high)])))
        # DOUBLE: nearest, halves to even; DuckDB raises past the range (and wraps right at its edge).
        limit = 2.0 ** (to.bits - 1) - 1
        bad = out_of(c, n, -limit, limit)
        value = n.value if f.integral else round_half_even(c, n.value)
        facts = Facts(max(floor_bound(f.lo), -limit), min(ceil_bound(f.hi), limit), False, True, f.nan_is_null)
        return checked(c, Num(value, n.null, to, facts, c.any([n.unsure, bad])))
    if to.kind == "decimal":
        limit = 10.0 ** to.precision
        if src.kind == "integer":
            value = c.op("Mul", [n.value, g.f64(10.0 ** to.scale)], "as_decimal") if to.scale else n.value
            out = Num(value, n.null, to, Facts(f.lo, f.hi, False, True, f.nan_is_null), n.unsure)
            return checked(c, Num(value, n.null, to, out.facts,
                                  c.any([n.unsure, out_of(c, n, -(limit / 10.0 ** to.scale - 1), limit / 10.0 ** to.scale - 1)])))
        if src.kind == "decimal":
            if to.scale >= src.scale:
                value = c.op("Mul", [n.value, g.f64(10.0 ** (to.scale - src.scale))]) if to.scale > src.scale else n.value
            else:
                value = rescale_int(c, n.value, src.scale - to.scale)
            nan_is_null = f.nan_is_null and to.scale >= src.scale  # rescale_int goes through int64
            return checked(c, Num(value, n.null, to, Facts(f.lo, f.hi, False, True, nan_is_null), n.unsure))
        # DOUBLE or FLOAT: round(x * 10**scale), halves away from zero, as DuckDB's DoubleToDecimalCast;
        # for a FLOAT the rounded value goes through a float once more.
        scaled = c.op("Mul", [n.value, g.f64(10.0 ** to.scale)], "scaled") if to.scale else n.value
        rounded = round_half_away(c, scaled)
        if src == FLOAT:
            rounded = c.op("Cast", [c.op("Cast", [rounded], "f32", to=TensorProto.FLOAT)], "f64", to=TensorProto.DOUBLE)
        lo, hi = f.lo, f.hi
        scaled_num = Num(rounded, n.null, to, Facts(lo * 10.0 ** to.scale, hi * 10.0 ** to.scale, f.may_nan))
        bad = out_of(c, scaled_num, -(min(limit, EXACT_LIMIT) - 1), min(limit, EXACT_LIMIT) - 1)
        return Num(rounded, n.null, to, Facts(max(lo, -limit), min(hi, limit), False, True, f.nan_is_null),
                   c.any([n.unsure, bad]))
    raise FusedCompileError(f"{where}: CAST of {src} to {to} is not supported")


def nan_order_compare(c: Compiler, op: str, a: Num, b: Num) -> str:
    """DuckDB's comparison of two doubles: NaN equals NaN and orders above every number."""
    names = {"EQ": "Equal", "NEQ": "Equal", "LT": "Less", "LTE": "LessOrEqual", "GT": "Greater", "GTE": "GreaterOrEqual"}
    plain = c.op(names[op], [a.value, b.value], "cmp")
    nan_a = c.op("IsNaN", [a.value]) if a.facts.may_nan else None
    nan_b = c.op("IsNaN", [b.value]) if b.facts.may_nan else None
    if nan_a is None and nan_b is None:
        return c.op("Not", [plain]) if op == "NEQ" else plain
    g = c.g
    both = c.all([nan_a, nan_b]) if nan_a and nan_b else None
    if op in ("EQ", "NEQ"):
        out = c.op("Or", [plain, both]) if both else plain
        return c.op("Not", [out]) if op == "NEQ" else out
    not_a = c.op("Not", [nan_a]) if nan_a else g.true()
    not_b = c.op("Not", [nan_b]) if nan_b else g.true()
    if op == "LT":  # a < b, or b is NaN and a is not
        return c.op("Or", [plain, c.op("And", [nan_b, not_a])]) if nan_b else plain
    if op == "LTE":
        return c.op("Or", [plain, nan_b]) if nan_b else plain
    if op == "GT":
        return c.op("Or", [plain, c.op("And", [nan_a, not_b])]) if nan_a else plain
    return c.op("Or", [plain, nan_a]) if nan_a else plain


__all__ = ["bounds", "checked", "convert", "nan_order_compare", "nan_possible", "out_of", "rescale_int",
           "round_half_away", "round_half_even", "np"]
