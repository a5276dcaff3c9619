"""DuckDB's SQL types, as far as the compiler needs them: what a value is, and what an operator
on two of them returns. The graph computes every number in float64 (timestamps in int64
microseconds), so the type decides the semantics the graph must reproduce: integer overflow is
an error in DuckDB, a DECIMAL is exact, a DOUBLE rounds, and ``/`` always returns a DOUBLE.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass

from sqlglot import exp

from training.errors import FusedCompileError


@dataclass(frozen=True)
class SqlType:
    """A DuckDB type: ``kind`` plus the integer width or the decimal precision and scale."""

    kind: str
    """boolean, integer, decimal, double, float, varchar, timestamp, list or null."""
    bits: int = 64
    """Integer width (8, 16, 32, 64): DuckDB raises an error past its range."""
    precision: int = 18
    """Decimal digits; DuckDB raises an error past 10**precision."""
    scale: int = 0
    """Decimal digits after the point; the graph holds a decimal as the integer value * 10**scale."""

    @property
    def numeric(self) -> bool:
        return self.kind in ("integer", "decimal", "double", "float", "boolean")

    @property
    def exact(self) -> bool:
        """Integers and decimals: DuckDB computes them exactly (the graph does while |v| <= 2**53)."""
        return self.kind in ("integer", "decimal")

    def integer_range(self) -> tuple[int, int]:
        return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1

    def __str__(self) -> str:
        if self.kind == "integer":
            return {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[self.bits]
        if self.kind == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        return self.kind.upper()


BOOLEAN = SqlType("boolean")
INTEGER = SqlType("integer", bits=32)
BIGINT = SqlType("integer", bits=64)
DOUBLE = SqlType("double")
FLOAT = SqlType("float")
VARCHAR = SqlType("varchar")
TIMESTAMP = SqlType("timestamp")
LIST = SqlType("list")
NULL = SqlType("null")
"""The type of a bare NULL literal: it takes the type of whatever it is combined with."""

EXACT_LIMIT = float(1 << 53)
"""Integers up to this magnitude are exact in float64; past it the graph cannot match DuckDB."""

INPUT_TYPES = {"double": DOUBLE, "integer": BIGINT, "boolean": BOOLEAN, "string": VARCHAR, "timestamp": TIMESTAMP}
"""The SQL type of each raw input field type (``serving.bundle.INPUT_TYPES``)."""

_CAST_TARGETS = {
    exp.DataType.Type.TINYINT: SqlType("integer", bits=8), exp.DataType.Type.SMALLINT: SqlType("integer", bits=16),
    exp.DataType.Type.INT: INTEGER, exp.DataType.Type.BIGINT: BIGINT,
    exp.DataType.Type.DOUBLE: DOUBLE, exp.DataType.Type.FLOAT: FLOAT,
    exp.DataType.Type.TEXT: VARCHAR, exp.DataType.Type.VARCHAR: VARCHAR,
    exp.DataType.Type.BOOLEAN: BOOLEAN,
    exp.DataType.Type.TIMESTAMP: TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ: TIMESTAMP, exp.DataType.Type.DATETIME: TIMESTAMP,
}


def cast_target(to: exp.DataType) -> SqlType:
    """The type a ``CAST(... AS <to>)`` produces, or a compile error naming it."""
    if to.this == exp.DataType.Type.DECIMAL:
        params = [int(p.this.this) if isinstance(p.this, exp.Literal) else int(p.name) for p in to.expressions]
        precision, scale = (params + [18, 3])[:2] if params else (18, 3)
        if len(params) == 1:
            scale = 0
        return SqlType("decimal", precision=precision, scale=scale)
    target = _CAST_TARGETS.get(to.this)
    if target is None:
        raise FusedCompileError(f"CAST to {to.sql('duckdb')} is outside the compiled SQL subset")
    return target


def literal_type(value: object, text: str | None = None) -> SqlType:
    """DuckDB's type for a literal: INTEGER if it fits 32 bits, else BIGINT; 1.5 is DECIMAL(2,1);
    1e3 is DOUBLE; strings VARCHAR."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, str):
        return VARCHAR
    if isinstance(value, dt.datetime):
        return TIMESTAMP
    if isinstance(value, tuple):
        return LIST
    if isinstance(value, int):
        return INTEGER if -(1 << 31) <= value < (1 << 31) else BIGINT
    if text is not None and "e" not in text.lower():
        digits = text.lstrip("-+")
        whole, _, fraction = digits.partition(".")
        whole = whole.lstrip("0")
        return SqlType("decimal", precision=max(1, len(whole) + len(fraction)), scale=len(fraction))
    return DOUBLE


def parse_literal(text: str) -> tuple[object, SqlType]:
    """A numeric literal's value (int, Decimal or float) and its DuckDB type."""
    if "." not in text and "e" not in text.lower():
        value: object = int(text)
        return value, literal_type(value)
    kind = literal_type(1.5, text)
    return (decimal.Decimal(text) if kind.kind == "decimal" else float(text)), kind


def supertype(a: SqlType, b: SqlType, where: str) -> SqlType:
    """The type two values are combined in (arithmetic, CASE branches, COALESCE, comparisons)."""
    if a.kind == "null":
        return b
    if b.kind == "null" or a == b:
        return a
    kinds = {a.kind, b.kind}
    if kinds <= {"integer"}:
        return a if a.bits >= b.bits else b
    if "double" in kinds and kinds <= {"integer", "decimal", "double", "float"}:
        return DOUBLE
    if "float" in kinds and kinds <= {"integer", "decimal", "float"}:
        return DOUBLE if "decimal" in kinds else FLOAT
    if kinds <= {"integer", "decimal"}:
        x, y = (a if a.kind == "decimal" else _as_decimal(a)), (b if b.kind == "decimal" else _as_decimal(b))
        scale = max(x.scale, y.scale)
        precision = min(38, max(x.precision - x.scale, y.precision - y.scale) + scale)
        return SqlType("decimal", precision=precision, scale=scale)
    raise FusedCompileError(f"{where}: cannot combine {a} with {b}")


def _as_decimal(t: SqlType) -> SqlType:
    digits = {8: 3, 16: 5, 32: 10, 64: 19}[t.bits]
    return SqlType("decimal", precision=digits, scale=0)


def arithmetic_type(op: str, a: SqlType, b: SqlType, where: str) -> SqlType:
    """Result type of ``a <op> b`` for + - *; ``/`` is always DOUBLE in DuckDB."""
    if op == "Div":
        return DOUBLE
    if "boolean" in (a.kind, b.kind):
        raise FusedCompileError(f"{where}: DuckDB has no arithmetic on BOOLEAN; cast it to an integer first")
    if a.kind == "decimal" or b.kind == "decimal":
        if {a.kind, b.kind} <= {"integer", "decimal", "null"}:
            x = a if a.kind == "decimal" else (_as_decimal(a) if a.kind == "integer" else b)
            y = b if b.kind == "decimal" else (_as_decimal(b) if b.kind == "integer" else a)
            if op == "Mul":
                return SqlType("decimal", precision=min(38, x.precision + y.precision), scale=x.scale + y.scale)
            scale = max(x.scale, y.scale)
            return SqlType("decimal", precision=min(38, max(x.precision - x.scale, y.precision - y.scale) + scale + 1),
                           scale=scale)
    return supertype(a, b, where)


def micros(value: dt.datetime) -> int:
    """A timestamp as DuckDB holds it: microseconds since 1970-01-01 (naive values are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
