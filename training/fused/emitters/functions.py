"""DOUBLE functions: LN, LOG/LOG10 (base 10 in DuckDB), LOG(b, x), EXP, SQRT, POWER.

DuckDB raises an error for LN/LOG of a number <= 0 and SQRT of a negative one: those rows are
unsure (the SQL path answers, with DuckDB's error) unless the argument's bounds rule it out, as
they do for ``ln(1 + greatest(x, 0))``. ONNX has no log10: LOG10 is LN(x) / LN(10), within an
ulp or two of DuckDB's ``std::log10`` and exact at powers of ten; transcendental functions agree
with DuckDB to a few ulps (ONNX Runtime's kernels are not glibc's), see docs/fused.md.
"""

from __future__ import annotations

import math
from typing import Any

from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import folding, numeric
from training.fused.emitters import Construct
from training.fused.types import DOUBLE
from training.fused.values import Const, Facts, Num, Value, type_of


def _as_double(c: Any, v: Value, sql: str) -> Num:
    kind = type_of(v)
    if not kind.numeric or kind.kind == "boolean":
        raise FusedCompileError(f"{sql}: expected a number, got {kind}")
    return numeric.convert(c, c.num(v, sql), DOUBLE, sql)


def _domain_unsure(c: Any, n: Num, strictly_positive: bool) -> str | None:
    """Rows where DuckDB raises: argument <= 0 (logarithms) or < 0 (square root)."""
    f = n.facts
    if (f.lo > 0.0) if strictly_positive else (f.lo >= 0.0):
        return None
    bad = c.op("LessOrEqual" if strictly_positive else "Less", [n.value, c.g.f64(0.0)], "domain")
    return c.op("And", [bad, c.op("Not", [n.null])]) if n.null else bad


def function(c: Any, name: str, args: list[Value], sql: str) -> Value:
    if all(isinstance(a, Const) for a in args):
        folded = folding.double_function(name, *[None if a.value is None else float(a.value) if a.value is not folding.ERROR
                                                 else folding.ERROR for a in args])  # type: ignore[union-attr]
        return Const(folded, DOUBLE)
    if (folded := c.elementwise(lambda *xs: function(c, name, list(xs), sql), args)) is not None:
        return folded
    nums = [_as_double(c, a, sql) for a in args]
    g = c.g
    x = nums[0]
    f = x.facts
    unsure = c.any([n.unsure for n in nums])
    null = c.any([n.null for n in nums])
    if name in ("Ln", "Log10", "Log2"):
        unsure = c.any([unsure, _domain_unsure(c, x, True)])
        value = c.op("Log", [x.value], "ln")
        if name != "Ln":
            base = 10.0 if name == "Log10" else 2.0
            value = c.op("Div", [value, g.f64(math.log(base))], "log")
            value = _exact_at_powers(c, x.value, value, base)
        lo = math.log(f.lo) if f.lo > 0 and math.isfinite(f.lo) else -math.inf
        hi = math.log(f.hi) if f.hi > 0 and math.isfinite(f.hi) else math.inf
        facts = Facts(lo - 1e-12 * abs(lo) - 1e-300 if math.isfinite(lo) else lo, hi + 1e-12 * abs(hi) if math.isfinite(hi) else hi,
                      may_nan=f.may_nan, nan_is_null=f.nan_is_null)
    elif name == "Sqrt":
        unsure = c.any([unsure, _domain_unsure(c, x, False)])
        value = c.op("Sqrt", [x.value])
        facts = Facts(math.sqrt(max(f.lo, 0.0)), math.sqrt(f.hi) if f.hi >= 0 else math.inf, f.may_nan, False, f.nan_is_null)
    elif name == "Exp":
        value = c.op("Exp", [x.value])
        facts = Facts(0.0, math.inf, f.may_nan, False, f.nan_is_null)
    elif name == "Pow":
        value = c.op("Pow", [x.value, nums[1].value])
        facts = Facts(-math.inf, math.inf, True, False, False)  # pow(NaN, 0) is 1: NULL needs its mask
    else:
        raise FusedCompileError(f"{sql}: unknown function {name}")
    return Num(value, null, DOUBLE, facts, unsure)


def _exact_at_powers(c: Any, x: str, approx: str, base: float) -> str:
    """log_base(x) is exactly k where x is base**k: LN(x)/LN(base) can miss it by an ulp."""
    g = c.g
    k = c.op("Round", [approx], "k")
    power = c.op("Pow", [g.f64(base), k], "power")
    # Only where base**k is a double worth trusting: |k| <= 22 (a subnormal x can equal 10**-323
    # without being it).
    small = c.op("LessOrEqual", [c.op("Abs", [k]), g.f64(22.0)])
    return c.op("Where", [c.op("And", [c.op("Equal", [power, x]), small]), k, approx], "exact_log")


def _unary(c: Any, node: exp.Expression, e: Any) -> Value:
    name = {exp.Ln: "Ln", exp.Exp: "Exp", exp.Sqrt: "Sqrt"}[type(node)]
    return function(c, name, [e(node.this)], node.sql("duckdb"))


def _log(c: Any, node: exp.Log, e: Any) -> Value:
    sql = node.sql("duckdb")
    if node.expression is None:  # LOG(x) is base 10 in DuckDB
        return function(c, "Log10", [e(node.this)], sql)
    base = e(node.this)
    if isinstance(base, Const) and base.value in (10, 2) and not isinstance(base.value, bool):
        return function(c, "Log10" if base.value == 10 else "Log2", [e(node.expression)], sql)
    raise FusedCompileError(f"{sql}: LOG with a base other than 2 or 10 is not supported")


def _pow(c: Any, node: exp.Pow, e: Any) -> Value:
    return function(c, "Pow", [e(node.this), e(node.expression)], node.sql("duckdb"))


CONSTRUCTS = (
    Construct("logarithm, exponential, square root", "LN, LOG (base 10), LOG10, LOG2, EXP, SQRT",
              (exp.Ln, exp.Exp, exp.Sqrt), _unary,
              grammar=(("approx", "ln({num})"), ("approx", "exp({num})"), ("num", "sqrt({num})"))),
    Construct("log", "", (exp.Log,), _log, grammar=(("approx", "log({num})"), ("approx", "log10({num})"))),
    Construct("power", "POWER(x, y)", (exp.Pow,), _pow, grammar=(("approx", "power({num}, {num})"),)),
)
