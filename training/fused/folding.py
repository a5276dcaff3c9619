"""Constant folding with DuckDB's semantics: what DuckDB computes for values known at compile time.

Integers and decimals are exact (Python ``int`` and ``Decimal``) and raise where DuckDB raises
(overflow); doubles are IEEE with DuckDB's exceptions: ``x / 0`` is ``±inf`` (``0 / 0`` NaN), NaN
equals NaN and orders above every number, ``ln``/``sqrt`` of a number out of their domain raise.
A DuckDB error is the value ``ERROR``: an expression that reaches the features with it is
refused, and in a per-code table it marks those codes' rows as unsure.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

from training.fused.types import BOOLEAN, DOUBLE, SqlType


class _Error:
    def __repr__(self) -> str:
        return "ERROR"


ERROR: Any = _Error()
"""DuckDB raises an error for this value."""

_CTX = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation])


def cast(value: Any, src: SqlType, dst: SqlType) -> Any:
    """``CAST(value AS dst)`` for a constant of type ``src``."""
    if value is None or value is ERROR or src == dst:
        return value
    if dst.kind == "double":
        return float(value)
    if dst.kind == "float":
        import numpy as np  # noqa: PLC0415

        with np.errstate(over="ignore"):
            result = float(np.float32(float(value)))
        return ERROR if math.isinf(result) and math.isfinite(float(value)) else result  # DuckDB raises
    if dst.kind == "integer":
        low, high = dst.integer_range()
        if src.kind == "double" or src.kind == "float":
            if not math.isfinite(value) or abs(value) >= 2.0 ** (dst.bits - 1) - 1:
                return ERROR  # DuckDB raises (and near the edge it wraps: never folded)
            result = round(value)  # Python rounds half to even, as DuckDB's nearbyint
        elif src.kind == "decimal":
            result = int(decimal.Decimal(value).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP, context=_CTX))
        elif src.kind == "boolean":
            result = int(value)
        else:
            result = int(value)
        return result if low <= result <= high else ERROR
    if dst.kind == "decimal":
        if src.kind in ("double", "float"):
            if not math.isfinite(value):
                return ERROR
            rounded = round_half_away(value * 10.0 ** dst.scale)  # DuckDB's DoubleToDecimalCast
            if src.kind == "float":
                import numpy as np  # noqa: PLC0415

                rounded = float(np.float32(rounded))
            if not math.isfinite(rounded) or abs(rounded) >= 10.0 ** dst.precision:
                return ERROR
            return decimal.Decimal(int(rounded)).scaleb(-dst.scale)
        exact = decimal.Decimal(value).quantize(decimal.Decimal(1).scaleb(-dst.scale), rounding=decimal.ROUND_HALF_UP,
                                                context=_CTX)
        return exact if abs(exact.scaleb(dst.scale)) < 10 ** dst.precision else ERROR
    if dst.kind == "boolean":
        return bool(value)
    return ERROR


def common(values: list[Any], types: list[SqlType], to: SqlType) -> list[Any]:
    return [cast(v, t, to) for v, t in zip(values, types)]


def arith(op: str, a: Any, b: Any, kind: SqlType) -> Any:
    """``a <op> b`` with both already cast to ``kind`` (the result type; DOUBLE for ``/``)."""
    if a is None or b is None:
        return None
    if a is ERROR or b is ERROR:
        return ERROR
    if kind.kind in ("double", "float"):
        a, b = float(a), float(b)
        if op == "Div":
            if b == 0.0:
                return math.nan if a == 0.0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
            return a / b
        try:
            return {"Add": a + b, "Sub": a - b, "Mul": a * b}[op]
        except OverflowError:
            return ERROR
    result = {"Add": a + b, "Sub": a - b, "Mul": a * b}[op]
    if kind.kind == "integer":
        low, high = kind.integer_range()
        return result if low <= result <= high else ERROR
    return result if abs(decimal.Decimal(result)) < decimal.Decimal(10) ** (kind.precision - kind.scale) else ERROR


def negate(a: Any, kind: SqlType) -> Any:
    if a is None or a is ERROR:
        return a
    if kind.kind == "integer":
        low, _ = kind.integer_range()
        return ERROR if a == low else -a
    return -a


def compare(op: str, a: Any, b: Any) -> Any:
    """DuckDB's comparison of two values of one type: NaN = NaN, NaN above every number."""
    if a is None or b is None:
        return None
    if a is ERROR or b is ERROR:
        return ERROR
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        a_nan, b_nan = math.isnan(a), math.isnan(b)
        if a_nan or b_nan:
            a, b = (1.0 if a_nan else 0.0), (1.0 if b_nan else 0.0)  # NaN = NaN; NaN > any number
            if not (a_nan and b_nan):
                a, b = (math.inf if a_nan else -math.inf), (math.inf if b_nan else -math.inf)
    import operator  # noqa: PLC0415

    return {"EQ": operator.eq, "NEQ": operator.ne, "LT": operator.lt, "LTE": operator.le, "GT": operator.gt,
            "GTE": operator.ge}[op](a, b)


def logic(op: str, a: Any, b: Any) -> Any:
    if a is ERROR or b is ERROR:
        return ERROR
    if op == "And":
        return False if (a is False or b is False) else (None if a is None or b is None else True)
    return True if (a is True or b is True) else (None if a is None or b is None else False)


def double_function(name: str, a: Any, b: Any = None) -> Any:
    """DuckDB's DOUBLE functions: errors where DuckDB raises, its rounding elsewhere."""
    if a is None or (b is None and name in ("Pow", "LogBase")):
        return None
    if a is ERROR or b is ERROR:
        return ERROR
    a = float(a)
    if name in ("Ln", "Log10", "Log2"):
        if a <= 0.0 or math.isnan(a):
            return ERROR if not math.isnan(a) else math.nan
        return {"Ln": math.log, "Log10": math.log10, "Log2": math.log2}[name](a) if math.isfinite(a) else a
    if name == "Sqrt":
        if a < 0.0:
            return ERROR
        return math.sqrt(a) if math.isfinite(a) else a
    if name == "Exp":
        try:
            return math.exp(a)
        except OverflowError:
            return math.inf
    if name == "Pow":
        import numpy as np  # noqa: PLC0415 (numpy's power is C's pow, as ONNX Runtime's)

        with np.errstate(all="ignore"):
            return float(np.power(np.float64(a), np.float64(float(b))))
    raise KeyError(name)


def round_half_away(x: float) -> float:
    """C's ``round``: halves away from zero (Python's ``round`` goes to even)."""
    if not math.isfinite(x):
        return x
    t = math.trunc(x)
    return float(t + (math.copysign(1.0, x) if abs(x - t) >= 0.5 else 0.0))


def round_double(x: Any, places: int) -> Any:
    """DuckDB's ``round(DOUBLE, places)``."""
    if x is None or x is ERROR:
        return x
    x = float(x)
    if places < 0:
        modifier = 10.0 ** -places
        out = round_half_away(x / modifier) * modifier
        return 0.0 if math.isinf(out) or math.isnan(out) else out
    modifier = 10.0 ** places
    with_places = x * modifier if math.isfinite(modifier) else math.inf
    out = round_half_away(with_places) / modifier if math.isfinite(with_places) else math.nan
    return x if math.isinf(out) or math.isnan(out) else out


def to_python(value: Any, kind: SqlType) -> Any:
    """A frozen table's value as a constant of ``kind``."""
    if value is None:
        return None
    if kind.kind == "decimal":
        return decimal.Decimal(value)
    if kind.kind in ("double", "float"):
        return float(value)
    if kind == BOOLEAN:
        return bool(value)
    return value


__all__ = ["ERROR", "arith", "cast", "common", "compare", "double_function", "logic", "negate", "round_double",
           "round_half_away", "to_python", "DOUBLE"]
