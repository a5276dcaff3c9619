"""LIST_CONTAINS of a list looked up in a frozen table (a pair lookup: row and value)."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto
from sqlglot import exp

from training.errors import FusedCompileError
from training.fused.emitters import Construct
from training.fused.scope import MAX_PATTERN_KEYS
from training.fused.types import VARCHAR
from training.fused.values import Bool, ListLookup, Str, Value


def list_contains(c: Any, lists: Value, item: Value, sql: str) -> Value:
    if not isinstance(lists, ListLookup):
        raise FusedCompileError(f"LIST_CONTAINS is supported on a list looked up in a frozen table: {sql}")
    if not isinstance(item, Str):
        raise FusedCompileError(f"LIST_CONTAINS is supported for string items: {sql}")
    domain = sorted({v for row in lists.lists if row for v in row})
    if len(domain) > MAX_PATTERN_KEYS and item.cleaned:
        raise FusedCompileError(f"LIST_CONTAINS over {len(domain)} distinct cleaned values is over the limit: {sql}")
    g = c.g
    # key = (row + 1) * width + (position + 1): a missing row (-1) or value (-1) lands in row or
    # column 0, which no listed pair uses, so no validity test is needed.
    width = len(domain) + 1
    shifted = c.scopes.lookup_index(item, domain, VARCHAR, "list values", offset=width + 1)
    pairs = sorted({(row_i + 1) * width + domain.index(v) + 1 for row_i, row in enumerate(lists.lists) if row for v in row})
    key = c.op("Add", [c.op("Mul", [lists.index, g.const(width, np.int64)]), shifted], "pair")
    found = c.op("LabelEncoder", [key], "inlist", domain="ai.onnx.ml", keys_int64s=pairs or [-1],
                 values_int64s=[1] * len(pairs) if pairs else [0], default_int64=0)
    hit = c.op("Cast", [found], "contains", to=TensorProto.BOOL)
    return Bool(hit, c.null_mask(item), item.unsure, false_when_null=True)  # a NULL item's key is in column 0


def _contains(c: Any, node: exp.ArrayContains, e: Any) -> Value:
    return list_contains(c, e(node.this), e(node.expression), node.sql("duckdb"))


CONSTRUCTS = (
    Construct("list_contains", "LIST_CONTAINS(list looked up in a frozen table, text)", (exp.ArrayContains,), _contains),
)
