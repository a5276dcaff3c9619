"""Parts of a timestamp: EPOCH, YEAR, QUARTER, MONTH, DAY, HOUR, MINUTE, SECOND, MILLISECOND,
DAYOFWEEK/DOW, ISODOW, DAYOFYEAR/DOY, via the functions, EXTRACT(part FROM ts) or DATE_PART.

Timestamps are int64 microseconds since 1970-01-01 (UTC), and every part is computed in int64
(floor division, H. Hinnant's civil-date algorithm), so it is exact for any year DuckDB holds.
``epoch`` is DuckDB's DOUBLE seconds: the microseconds as a double, divided by a million.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from onnx import TensorProto
from sqlglot import exp

from training.errors import FusedCompileError
from training.fused.emitters import Construct
from training.fused.types import BIGINT, DOUBLE, TIMESTAMP, micros
from training.fused.values import Coded, Const, Facts, Num, Value, type_of

_DAY = 86_400_000_000
_PART_RANGES = {"hour": (0, 23), "minute": (0, 59), "second": (0, 59), "millisecond": (0, 59_999),
                "microsecond": (0, 59_999_999), "day": (1, 31), "month": (1, 12), "quarter": (1, 4),
                "dow": (0, 6), "isodow": (1, 7), "doy": (1, 366), "year": (-290_308, 294_247)}
_FUNCTIONS = {exp.Hour: "hour", exp.Minute: "minute", exp.Second: "second", exp.Day: "day", exp.DayOfMonth: "day",
              exp.Month: "month", exp.Year: "year", exp.Quarter: "quarter", exp.DayOfWeek: "dow",
              exp.DayOfWeekIso: "isodow", exp.DayOfYear: "doy", exp.TimeToUnix: "epoch"}
_ALIASES = {"hours": "hour", "h": "hour", "minutes": "minute", "m": "minute", "seconds": "second", "s": "second",
            "milliseconds": "millisecond", "ms": "millisecond", "microseconds": "microsecond", "us": "microsecond",
            "days": "day", "d": "day", "dayofmonth": "day", "months": "month", "mon": "month", "years": "year",
            "y": "year", "yr": "year", "quarters": "quarter", "dayofweek": "dow", "weekday": "dow",
            "dayofyear": "doy", "isodow": "isodow", "epoch": "epoch"}


def _fold(part: str, value: dt.datetime) -> Any:
    if part == "epoch":
        return micros(value) / 1e6
    us = micros(value)
    days, rem = divmod(us, _DAY)
    date = dt.date(1970, 1, 1) + dt.timedelta(days=days)
    return {"hour": rem // 3_600_000_000, "minute": rem // 60_000_000 % 60, "second": rem // 1_000_000 % 60,
            "millisecond": rem // 1_000 % 60_000, "microsecond": rem % 60_000_000, "day": date.day,
            "month": date.month, "year": date.year, "quarter": (date.month - 1) // 3 + 1,
            "dow": (days + 4) % 7, "isodow": (days + 3) % 7 + 1, "doy": date.timetuple().tm_yday}[part]


def time_part(c: Any, part: str, value: Value, sql: str) -> Value:
    if type_of(value) != TIMESTAMP:
        raise FusedCompileError(f"{sql}: expected a timestamp, got {type_of(value)}")
    kind = DOUBLE if part == "epoch" else BIGINT
    if isinstance(value, Const):
        return Const(None if value.value is None else _fold(part, value.value), kind)
    if isinstance(value, Coded):
        folded = c.elementwise(lambda x: time_part(c, part, x, sql), [value])
        if folded is not None:
            return folded
    n = c.num(value, sql)
    g = c.g
    t = n.value
    if part == "epoch":
        seconds = c.op("Div", [c.op("Cast", [t], "us", to=TensorProto.DOUBLE), g.f64(1e6)], "epoch")
        return Num(seconds, n.null, DOUBLE, Facts(n.facts.lo / 1e6 - 1, n.facts.hi / 1e6 + 1, False, False, False), n.unsure)

    def i(x: int) -> str:
        return g.i64(x)

    def floordiv(x: str, d: int) -> str:
        """Floor division by a positive constant (ONNX's integer Div truncates toward zero)."""
        return c.op("Div", [c.op("Sub", [x, c.op("Mod", [x, i(d)])]), i(d)])

    in_day = c.op("Mod", [t, i(_DAY)], "in_day")  # fmod=0: the divisor's sign, so 0 <= in_day < _DAY
    if part in ("hour", "minute", "second", "millisecond", "microsecond"):
        divisor, modulus = {"hour": (3_600_000_000, 24), "minute": (60_000_000, 60), "second": (1_000_000, 60),
                            "millisecond": (1_000, 60_000), "microsecond": (1, 60_000_000)}[part]
        out = c.op("Div", [in_day, i(divisor)])
        if part != "hour":
            out = c.op("Mod", [out, i(modulus)])
    else:
        days = c.op("Div", [c.op("Sub", [t, in_day]), i(_DAY)], "days")
        if part == "isodow":  # 1970-01-01 was a Thursday (ISO 4)
            out = c.op("Add", [c.op("Mod", [c.op("Add", [days, i(3)]), i(7)]), i(1)])
        elif part == "dow":
            out = c.op("Mod", [c.op("Add", [days, i(4)]), i(7)])
        else:
            out = _civil(c, days, part, floordiv, i)
    lo, hi = _PART_RANGES[part]
    value_f = c.op("Cast", [out], part, to=TensorProto.DOUBLE)
    return Num(value_f, n.null, BIGINT, Facts(float(lo), float(hi), False, True, False), n.unsure)


def _civil(c: Any, days: str, part: str, floordiv: Any, i: Any) -> str:
    """Year, month, day, quarter or day of year from days since 1970-01-01 (Hinnant), in int64."""
    z = c.op("Add", [days, i(719468)])
    era = floordiv(z, 146097)
    doe = c.op("Sub", [z, c.op("Mul", [era, i(146097)])])
    yoe = c.op("Div", [c.op("Sub", [c.op("Add", [c.op("Sub", [doe, c.op("Div", [doe, i(1460)])]),
                                               c.op("Div", [doe, i(36524)])]), c.op("Div", [doe, i(146096)])]), i(365)])
    doy_march = c.op("Sub", [doe, c.op("Sub", [c.op("Add", [c.op("Mul", [yoe, i(365)]), c.op("Div", [yoe, i(4)])]),
                                               c.op("Div", [yoe, i(100)])])])
    mp = c.op("Div", [c.op("Add", [c.op("Mul", [doy_march, i(5)]), i(2)]), i(153)])
    day = c.op("Add", [c.op("Sub", [doy_march, c.op("Div", [c.op("Add", [c.op("Mul", [mp, i(153)]), i(2)]), i(5)])]), i(1)])
    month = c.op("Where", [c.op("Less", [mp, i(10)]), c.op("Add", [mp, i(3)]), c.op("Sub", [mp, i(9)])])
    if part == "day":
        return day
    if part == "month":
        return month
    if part == "quarter":
        return c.op("Add", [c.op("Div", [c.op("Sub", [month, i(1)]), i(3)]), i(1)])
    year = c.op("Add", [c.op("Add", [yoe, c.op("Mul", [era, i(400)])]),
                        c.op("Cast", [c.op("LessOrEqual", [month, i(2)])], "jan_feb", to=TensorProto.INT64)])
    if part == "year":
        return year
    # Day of year: days since January 1st of the same year, plus one.
    leap = c.op("And", [c.op("Equal", [c.op("Mod", [year, i(4)]), i(0)]),
                        c.op("Or", [c.op("Not", [c.op("Equal", [c.op("Mod", [year, i(100)]), i(0)])]),
                                    c.op("Equal", [c.op("Mod", [year, i(400)]), i(0)])])])
    before = c.g.const([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334], "int64")
    cumulative = c.op("Gather", [before, month])
    after_feb = c.op("Cast", [c.op("And", [leap, c.op("Greater", [month, i(2)])])], "leap_day", to=TensorProto.INT64)
    return c.op("Add", [c.op("Add", [cumulative, day]), after_feb])


def _function(c: Any, node: exp.Expression, e: Any) -> Value:
    return time_part(c, _FUNCTIONS[type(node)], e(node.this), node.sql("duckdb"))


def _part_name(name: str, sql: str) -> str:
    part = _ALIASES.get(name.lower(), name.lower())
    if part not in _PART_RANGES and part != "epoch":
        raise FusedCompileError(f"{sql}: the date part {name!r} is not supported (supported: "
                                f"{', '.join(sorted([*_PART_RANGES, 'epoch']))})")
    return part


def _extract(c: Any, node: exp.Extract, e: Any) -> Value:
    sql = node.sql("duckdb")
    return time_part(c, _part_name(node.this.name, sql), e(node.expression), sql)


def _named(c: Any, node: exp.Anonymous, e: Any) -> Value:
    sql = node.sql("duckdb")
    name = node.name.lower()
    args = node.expressions
    if name in ("date_part", "datepart") and len(args) == 2 and isinstance(args[0], exp.Literal) and args[0].is_string:
        return time_part(c, _part_name(args[0].this, sql), e(args[1]), sql)
    if name in ("dow", "doy", "millisecond", "microsecond") and len(args) == 1:
        return time_part(c, name, e(args[0]), sql)
    raise FusedCompileError(f"{sql}: the function {name}() is outside the compiled SQL subset")


CONSTRUCTS = (
    Construct("timestamp parts", "EPOCH, YEAR, QUARTER, MONTH, DAY, HOUR, MINUTE, SECOND, MILLISECOND, DAYOFWEEK/DOW, "
              "ISODOW, DAYOFYEAR/DOY, EXTRACT(part FROM ts), DATE_PART('part', ts)", tuple(_FUNCTIONS), _function,
              grammar=tuple(("int", f"{fn}({{ts}})") for fn in ("hour", "minute", "second", "day", "month", "year",
                                                                "quarter", "dayofweek", "isodow", "dayofyear"))
              + (("num", "epoch({ts})"),)),
    Construct("extract", "", (exp.Extract,), _extract,
              grammar=(("int", "extract(hour from {ts})"), ("int", "extract(doy from {ts})"), ("int", "extract(dow from {ts})"))),
    Construct("date_part", "", (exp.Anonymous,), _named,
              grammar=(("int", "date_part('minute', {ts})"), ("int", "millisecond({ts})"))),
)
