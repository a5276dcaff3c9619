"""The compiler's symbolic values: what a SQL expression is while it is being compiled.

A value is either known at compile time (``Const``), a tensor with its SQL type and what is
known about it (``Num``, ``Bool``), a raw string field with the cleanup applied to it so far
(``Str``), an integer's decimal text (``IntText``), a value folded per string code (``Coded``)
or a list looked up in a frozen table (``ListLookup``).

Every tensor value carries a NULL mask (``null``) and an "unsure" mask (``unsure``): rows where
the graph cannot give DuckDB's answer (DuckDB raises an error there, or the value is past what
float64 holds exactly). Unsure rows are scored by the SQL path instead, so the fused path is
exact or it steps aside, row by row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from training.fused.types import BOOLEAN, SqlType


@dataclass(frozen=True)
class Facts:
    """What is known about a number tensor's values where they are not NULL."""

    lo: float = -math.inf
    """Lower bound of the value (the SQL value, not the scaled integer a DECIMAL is held as)."""
    hi: float = math.inf
    """Upper bound."""
    may_nan: bool = True
    """The value can be NaN (0/0, inf - inf...); DuckDB orders NaN above every number."""
    integral: bool = False
    """Every value is a whole number (a cast to an integer keeps it)."""
    nan_is_null: bool = False
    """The tensor is NaN exactly where the value is NULL (NULL needs no mask in the feature matrix)."""

    @property
    def finite(self) -> bool:
        return not self.may_nan and -math.inf < self.lo and self.hi < math.inf

    def excludes(self, x: float) -> bool:
        return not self.may_nan and (x < self.lo or x > self.hi)


UNKNOWN = Facts()


def floor_bound(x: float) -> float:
    return float(math.floor(x)) if math.isfinite(x) else x


def ceil_bound(x: float) -> float:
    return float(math.ceil(x)) if math.isfinite(x) else x


@dataclass(frozen=True)
class Const:
    """A value known at compile time (None is SQL NULL), with its SQL type."""

    value: Any
    type: SqlType


@dataclass(frozen=True)
class Num:
    """A number or timestamp tensor: float64 (a DECIMAL as its scaled integer) or, for
    timestamps, int64 microseconds since 1970-01-01."""

    value: str
    null: str | None
    type: SqlType
    facts: Facts = UNKNOWN
    unsure: str | None = None

    def with_facts(self, **changes: Any) -> Num:
        return replace(self, facts=replace(self.facts, **changes))


@dataclass(frozen=True)
class Bool:
    value: str
    null: str | None
    unsure: str | None = None
    false_when_null: bool = False
    """``value`` is already False wherever ``null`` is set, so "true and not null" is just ``value``."""

    @property
    def type(self) -> SqlType:
        return BOOLEAN


@dataclass(frozen=True)
class Str:
    """A raw string input after TRIM/LOWER/UPPER/NULLIF(x, '') cleanup, kept symbolic until compared."""

    raw: str
    raw_null: str | None
    trim: bool = False
    case: str | None = None
    nullif_empty: bool = False
    unsure: str | None = None

    @property
    def cleaned(self) -> bool:
        return self.trim or self.case is not None


@dataclass(frozen=True)
class IntText:
    """``CAST(<integer> AS VARCHAR)``: the integer's decimal digits, compared and looked up as numbers."""

    number: Num


@dataclass(frozen=True)
class ListLookup:
    """A list column of a frozen table, at the rows a lookup found (index -1: no row)."""

    lists: tuple[tuple[Any, ...] | None, ...]
    index: str


@dataclass(frozen=True)
class Coded:
    """A value that depends on one string code only: its value for each code (see
    ``training.fused.codes``). Operations on it are folded at compile time, code by code; it
    becomes a tensor (one ``Gather``) only when something needs one."""

    code: str
    table: tuple[Any, ...]
    type: SqlType
    errors: frozenset[int] = field(default_factory=frozenset)
    """Codes for which DuckDB raises an error (the rows are unsure)."""


@dataclass(frozen=True)
class RowId:
    """The request row's identity (``__row_id``): what per-request relations are joined on."""


Value = Const | Num | Bool | Str | IntText | Coded | ListLookup | RowId
OTHER_TEXT = object()
"""The cleaned text of a row that matches none of its field's constants."""


def type_of(v: Value) -> SqlType:
    from training.fused.types import LIST, VARCHAR  # noqa: PLC0415 (small cycle avoided)

    if isinstance(v, (Const, Num, Coded)):
        return v.type
    if isinstance(v, Bool):
        return BOOLEAN
    if isinstance(v, ListLookup):
        return LIST
    return VARCHAR
