"""CAST between numbers (DuckDB's rounding and range errors), booleans, text and timestamps.

- to integers: DOUBLE rounds half to even, DECIMAL half away from zero; out of range is an error
  in DuckDB (unsure rows);
- to DECIMAL(p, s): DOUBLE as ``round(x * 10**s + sign * 1e-9)``, DuckDB's own recipe;
- an integer to VARCHAR is its digits (compared and looked up as the number);
- VARCHAR to a number: plain digits (``-?[0-9]{1,15}``, optionally ``.[0-9]{1,15}`` for DOUBLE)
  are parsed in the graph; anything else DuckDB also reads (spaces, '1e3', '0x1F', '1_000')
  is left to the SQL path, row by row.
"""

from __future__ import annotations

from typing import Any

from onnx import TensorProto
from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import folding, numeric
from training.fused.emitters import Construct
from training.fused.types import BOOLEAN, DOUBLE, TIMESTAMP, VARCHAR, SqlType, cast_target
from training.fused.values import Bool, Coded, Const, Facts, IntText, Num, Str, Value, type_of

_PLAIN_INTEGER = "-?[0-9]{1,15}"
_PLAIN_DECIMAL = "-?[0-9]{1,15}([.][0-9]{1,15})?"


def cast(c: Any, value: Value, to: SqlType, sql: str) -> Value:
    src = type_of(value)
    if isinstance(value, Const):
        return _fold(value, to, sql)
    if isinstance(value, Coded) and (folded := c.elementwise(lambda x: cast(c, x, to, sql), [value])) is not None:
        return folded
    if to == VARCHAR:
        if isinstance(value, (Str, IntText)):
            return value
        if isinstance(value, Num) and src.kind == "integer":
            return IntText(value)
        raise FusedCompileError(f"CAST of {src} to VARCHAR is not supported (DuckDB's text of a {src} is not "
                                f"reproduced in ONNX): {sql}")
    if to == BOOLEAN:
        if isinstance(value, Bool):
            return value
        if isinstance(value, Num) and src.kind == "integer":
            return Bool(c.op("Not", [c.op("Equal", [value.value, c.g.f64(0.0)])]), value.null, value.unsure)
        raise FusedCompileError(f"CAST of {src} to BOOLEAN is not supported: {sql}")
    if to == TIMESTAMP:
        if isinstance(value, Num) and src == TIMESTAMP:
            return value
        raise FusedCompileError(f"CAST of {src} to TIMESTAMP is not supported: {sql}")
    if isinstance(value, IntText):
        return numeric.convert(c, value.number, to, sql)
    if isinstance(value, Str):
        return _parse(c, value, to, sql)
    if isinstance(value, Bool):
        as_int = Num(c.op("Cast", [value.value], "num", to=TensorProto.DOUBLE), value.null, SqlType("integer", bits=32),
                     Facts(0.0, 1.0, False, True), value.unsure)
        return numeric.convert(c, as_int, to, sql)
    return numeric.convert(c, c.num(value, sql), to, sql)


def _fold(value: Const, to: SqlType, sql: str) -> Const:
    src = type_of(value)
    v = value.value
    if v is None or v is folding.ERROR:
        return Const(v, to)
    if to == VARCHAR:
        if isinstance(v, str):
            return Const(v, VARCHAR)
        if isinstance(v, bool):
            return Const("true" if v else "false", VARCHAR)
        if isinstance(v, int):
            return Const(str(v), VARCHAR)
        raise FusedCompileError(f"CAST of the constant {v!r} to VARCHAR is not supported: {sql}")
    if isinstance(v, str):
        if to.kind not in ("integer", "double", "decimal"):
            raise FusedCompileError(f"CAST of text to {to} is not supported: {sql}")
        import duckdb  # noqa: PLC0415 (compile time only: DuckDB itself reads the constant)

        try:
            parsed = duckdb.sql(f"select cast(? as {to})", params=[v]).fetchone()[0]  # type: ignore[call-overload]
        except duckdb.Error:
            parsed = folding.ERROR
        return Const(parsed, to)
    if src == TIMESTAMP or to == TIMESTAMP:
        if src == to:
            return value
        raise FusedCompileError(f"CAST of {src} to {to} is not supported: {sql}")
    return Const(folding.cast(v, src, to), to)


def _parse(c: Any, s: Str, to: SqlType, sql: str) -> Value:
    """Plain digits parsed in the graph (every parser agrees on them); any other text is unsure."""
    if s.cleaned or s.nullif_empty:
        raise FusedCompileError(f"CAST of cleaned text to a number is not supported: {sql}")
    if to.kind not in ("integer", "double"):  # DuckDB reads text to DECIMAL exactly, not via a double
        raise FusedCompileError(f"CAST of text to {to} is not supported: {sql}")
    plain = c.op("RegexFullMatch", [s.raw], "plain", pattern=_PLAIN_INTEGER if to.kind == "integer" else _PLAIN_DECIMAL)
    present = c.op("Not", [s.raw_null]) if s.raw_null else None
    unsure = c.op("Not", [plain]) if present is None else c.op("And", [c.op("Not", [plain]), present])
    # Text that is not plain becomes "0" first, so ONNX Runtime's parser never sees it.
    safe = c.op("Where", [plain, s.raw, c.g.const("0", object)], "digits")
    number = c.op("Cast", [safe], "parsed", to=TensorProto.DOUBLE)
    limit = 1e15
    kind = SqlType("integer", bits=64) if to.kind == "integer" else DOUBLE
    n = Num(number, s.raw_null, kind, Facts(-limit, limit, False, to.kind == "integer", False), c.any([s.unsure, unsure]))
    return numeric.convert(c, n, to, sql)


def _cast(c: Any, node: exp.Cast, e: Any) -> Value:
    if isinstance(node, exp.TryCast):
        raise FusedCompileError(f"TRY_CAST is not supported: {node.sql('duckdb')}")
    return cast(c, e(node.this), cast_target(node.to), node.sql("duckdb"))


CONSTRUCTS = (
    Construct("cast", "CAST(x AS INTEGER | BIGINT | SMALLINT | TINYINT | DOUBLE | FLOAT | DECIMAL(p, s) | VARCHAR | BOOLEAN)",
              (exp.Cast,), _cast,
              grammar=(("int", "cast({num} as bigint)"), ("int", "cast({num} as integer)"), ("int", "cast({bool} as integer)"),
                       ("num", "cast({num} as decimal(18, 2))"), ("num", "cast({int} as double)"),
                       ("num", "cast({num} as float)"), ("int", "cast({intlit} as smallint)"),
                       ("num", "cast(cast({num} as decimal(9, 3)) as double)"), ("bool", "(cast({int} as varchar) = {inttext})"),
                       ("int", "cast({rawtext} as bigint)"), ("num", "cast({rawtext} as double)"))),
)
