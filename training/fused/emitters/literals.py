"""Literals: numbers (typed as DuckDB types them), strings, booleans, NULL and the empty list."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from training.fused.emitters import Construct
from training.fused.types import BOOLEAN, LIST, NULL, VARCHAR, parse_literal
from training.fused.values import Const


def _literal(c: Any, node: exp.Literal, e: Any) -> Const:
    if node.is_string:
        return Const(node.this, VARCHAR)
    value, kind = parse_literal(node.this)
    return Const(value, kind)


def _null(c: Any, node: exp.Null, e: Any) -> Const:
    return Const(None, NULL)


def _boolean(c: Any, node: exp.Boolean, e: Any) -> Const:
    return Const(node.this, BOOLEAN)


def _array(c: Any, node: exp.Array, e: Any) -> Const:
    if node.expressions:
        from training.errors import FusedCompileError  # noqa: PLC0415

        raise FusedCompileError(f"list literals other than [] are not supported: {node.sql('duckdb')}")
    return Const((), LIST)


CONSTRUCTS = (
    Construct("literal", "numbers, strings, TRUE/FALSE, NULL", (exp.Literal,), _literal,
              grammar=(("num", "{lit}"), ("int", "{intlit}"))),
    Construct("null", "", (exp.Null,), _null, grammar=(("num", "NULL"),)),
    Construct("boolean", "", (exp.Boolean,), _boolean, grammar=(("bool", "TRUE"), ("bool", "FALSE"))),
    Construct("empty list", "[] (as COALESCE's fallback for a looked-up list)", (exp.Array,), _array),
)
