"""TRIM, LOWER, UPPER of a raw text field, as DuckDB defines them (``training.fused.text``).

The cleaned text is never computed: it stays symbolic (``Str``) until it is compared or looked
up, where it becomes the field's string code.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from training.errors import FusedCompileError
from training.fused import text
from training.fused.emitters import Construct
from training.fused.types import VARCHAR
from training.fused.values import Const, Str, Value


def clean(c: Any, kind: type, node: exp.Expression, value: Value, sql: str) -> Value:
    if kind is exp.Trim and (node.args.get("expression") is not None or node.args.get("position")):
        raise FusedCompileError(f"{sql}: only TRIM(x) of spaces on both sides is supported")
    case = None if kind is exp.Trim else ("lower" if kind is exp.Lower else "upper")
    if isinstance(value, Const):
        if value.value is None:
            return value
        if not isinstance(value.value, str):
            raise FusedCompileError(f"{sql}: expected text")
        return Const(text.clean(value.value, kind is exp.Trim, case), VARCHAR)
    if not isinstance(value, Str) or value.nullif_empty:
        raise FusedCompileError(f"{sql}: TRIM/LOWER/UPPER apply to raw string fields (before NULLIF)")
    if kind is exp.Trim:
        return Str(value.raw, value.raw_null, True, value.case, unsure=value.unsure)
    if value.case is not None and value.case != case:  # upper(lower(x)) is not upper(x) outside ASCII
        raise FusedCompileError(f"{sql}: LOWER and UPPER of one value are not supported together")
    return Str(value.raw, value.raw_null, value.trim, case, unsure=value.unsure)


def _clean(c: Any, node: exp.Expression, e: Any) -> Value:
    return clean(c, type(node), node, e(node.this), node.sql("duckdb"))


CONSTRUCTS = (
    Construct("trim, lower, upper", "TRIM, LOWER, UPPER (DuckDB's Unicode spaces and case mapping)",
              (exp.Trim, exp.Lower, exp.Upper), _clean,
              grammar=(("str", "trim({rawtext})"), ("str", "lower({rawtext})"), ("str", "upper(trim({rawtext}))"),
                       ("str", "nullif(lower(trim({rawtext})), '')"), ("str", "{rawtext}"))),
)
