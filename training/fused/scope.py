"""Relations and their columns: the request, CTEs, frozen tables (constants and lookups).

A ``Scope`` maps column names to thunks that compile once, so a column no feature reads costs
nothing. Joins to frozen tables become lookups: the row whose key equals the request's key, or
-1. What is read from a looked-up row is folded per row of the table (``Coded``) when the table
is small enough, so a vocabulary lookup and everything computed from it is one ``Gather``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sqlglot import exp

from serving.fused import INT64_NULL
from training.errors import FusedCompileError
from training.fused import folding
from training.fused.types import BOOLEAN, DOUBLE, FLOAT, LIST, TIMESTAMP, VARCHAR, SqlType, micros
from training.fused.values import Coded, Const, Facts, IntText, ListLookup, Num, RowId, Str, Value

if TYPE_CHECKING:
    from training.fused.compiler import Compiler

MAX_PATTERN_KEYS = 512
"""Keys compared after TRIM/LOWER/UPPER: each is a pattern when a row misses the exact table."""
MAX_CODED_ROWS = 1 << 17
"""Frozen tables up to this many rows are folded row by row (values derived from a looked-up
row become one table); bigger ones are looked up and computed on tensors at run time."""
ROW_ID = "__row_id"


@dataclass
class Scope:
    """Columns of a relation: name -> thunk that compiles (once) to a Value."""

    columns: dict[str, Callable[[], Value]] = field(default_factory=dict)
    cache: dict[str, Value] = field(default_factory=dict)

    def get(self, name: str, where: str) -> Value:
        if name not in self.columns:
            raise FusedCompileError(f"column {name!r} is not available in {where}")
        if name not in self.cache:
            self.cache[name] = self.columns[name]()
        return self.cache[name]


def arrow_type(t: pa.DataType, where: str) -> SqlType:
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_integer(t):
        return SqlType("integer", bits=t.bit_width)
    if pa.types.is_float64(t):
        return DOUBLE
    if pa.types.is_float32(t):
        return FLOAT
    if pa.types.is_decimal(t):
        return SqlType("decimal", precision=t.precision, scale=t.scale)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return VARCHAR
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return LIST
    raise FusedCompileError(f"{where}: frozen column type {t} is not supported")


def conjuncts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    return [node]


class Scopes:
    """Compiles relations into scopes; CTEs once each."""

    def __init__(self, c: Compiler) -> None:
        self.c = c
        self.ctes = {cte.alias: cte.this for cte in c.tree.find_all(exp.CTE)}
        self._cte_scopes: dict[str, Scope] = {}
        self._row_lookups: dict[str, int] = {}  # exact lookup index -> rows of its table
        self._coded_lookups: dict[str, tuple[str, tuple[int, ...]]] = {}

    def of(self, relation: str) -> Scope:
        c = self.c
        if relation == "request":
            return Scope({**{n: (lambda n=n: c.raw(n)) for n in c.fields}, ROW_ID: RowId})
        if relation in self.ctes:
            if relation not in self._cte_scopes:
                self._cte_scopes[relation] = self.select(self.ctes[relation], relation)
            return self._cte_scopes[relation]
        raise FusedCompileError(f"relation {relation!r} is neither the request, a CTE nor a frozen table")

    def select(self, select: exp.Expression, where: str, bindings: dict[str, Scope] | None = None) -> Scope:
        """``bindings``: relations to read from these scopes instead (an entity's events, compiled
        over the request's own fields or over its stored events, see ``emitters.window``)."""
        from training.fused.emitters import window  # noqa: PLC0415 (entity state: its own family)

        if window.is_state_select(select):
            return window.state_scope(self.c, select, where)
        if not isinstance(select, exp.Select):
            raise FusedCompileError(f"{where}: only SELECT ... FROM ... [JOIN ...] is supported, got {select.sql('duckdb')[:80]}")
        for banned in ("group", "having", "qualify", "limit", "distinct", "where"):
            if select.args.get(banned):
                raise FusedCompileError(f"{where}: {banned.upper()} is not row-level; not supported")
        aliases: dict[str, Scope] = {}
        from_ = (select.args.get("from_") or select.args.get("from")).this
        aliases[from_.alias_or_name] = self.relation(from_, where, bindings)
        default = from_.alias_or_name
        for join in select.args.get("joins") or []:
            aliases[join.this.alias_or_name] = self.join(join, aliases, where)
        out = Scope()
        for projection in select.expressions:
            if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
                source = aliases[projection.table] if isinstance(projection, exp.Column) and projection.table else aliases[default]
                for name in source.columns:
                    out.columns[name] = (lambda s=source, n=name: s.get(n, where))
                continue
            name = projection.alias_or_name
            node = projection.this if isinstance(projection, exp.Alias) else projection
            out.columns[name] = (lambda node=node: self.c.expr(node, aliases, default, where))
        return out

    def relation(self, table: exp.Expression, where: str, bindings: dict[str, Scope] | None = None) -> Scope:
        if not isinstance(table, exp.Table):
            raise FusedCompileError(f"{where}: subqueries in FROM are not supported: {table.sql('duckdb')[:80]}")
        name = table.name
        if bindings and name in bindings:
            return bindings[name]
        if name in self.c.tables:
            frozen = self.c.tables[name]
            if frozen.num_rows != 1:
                raise FusedCompileError(f"{where}: frozen table {name!r} has {frozen.num_rows} rows; only a "
                                        "single-row table can be used without a join condition")
            row = frozen.to_pylist()[0]
            types = {f.name: arrow_type(f.type, f"{where}: {name}.{f.name}") for f in frozen.schema}
            return Scope({col: (lambda v=row[col], t=types[col]: Const(folding.to_python(v, t), t))
                          for col in frozen.column_names})
        return self.of(name)

    def join(self, join: exp.Join, aliases: dict[str, Scope], where: str) -> Scope:
        table = join.this
        name, alias = table.name, table.alias_or_name
        kind = ((join.args.get("side") or "") + (join.args.get("kind") or "")).upper()
        if name in self.c.tables and (kind == "CROSS" or join.args.get("on") is None):
            return self.relation(table, where)
        if name not in self.c.tables and name in self.ctes and kind in ("LEFT", "LEFTOUTER", "INNER", ""):
            return self._row_join(join, name, alias, aliases, where)
        if name not in self.c.tables or kind not in ("LEFT", "LEFTOUTER"):
            raise FusedCompileError(f"{where}: only LEFT JOIN to a frozen table (or CROSS JOIN to a single-row one) "
                                    f"is supported, got {join.sql('duckdb')[:100]}")
        return self._lookup_join(join, name, alias, aliases, where)

    def _row_join(self, join: exp.Join, name: str, alias: str, aliases: dict[str, Scope], where: str) -> Scope:
        """A join of two relations that both have one row per request row, on the row's identity."""
        on = join.args.get("on")
        using = [c.name for c in join.args.get("using") or []]
        right = self.of(name)
        if using == [ROW_ID] and on is None:
            return right
        conditions = conjuncts(on) if on is not None else []
        if len(conditions) == 1 and isinstance(conditions[0], exp.EQ):
            sides = [conditions[0].this, conditions[0].expression]
            scopes = {**aliases, alias: right}
            values = [self.c.expr(side, scopes, None, where) if isinstance(side, exp.Column) else None for side in sides]
            if all(isinstance(v, RowId) for v in values):
                return right
        raise FusedCompileError(f"{where}: a join of two per-request relations must be on the request row "
                                f"({ROW_ID}) alone, got {join.sql('duckdb')[:100]}")

    def _lookup_join(self, join: exp.Join, name: str, alias: str, aliases: dict[str, Scope], where: str) -> Scope:
        frozen = self.c.tables[name]
        rows = frozen.to_pylist()
        types = {f.name: arrow_type(f.type, f"{where}: {name}.{f.name}") for f in frozen.schema}
        key_expr, key_col = None, None
        for cond in conjuncts(join.args["on"]):
            if not isinstance(cond, exp.EQ):
                raise FusedCompileError(f"{where}: join condition must be equalities joined by AND, got {cond.sql('duckdb')}")
            left, right = cond.this, cond.expression
            if isinstance(right, exp.Column) and right.table == alias:
                left, right = right, left
            if not (isinstance(left, exp.Column) and left.table == alias):
                raise FusedCompileError(f"{where}: join condition {cond.sql('duckdb')} does not compare a column of {alias}")
            other = self.c.expr(right, aliases, None, where)
            if isinstance(other, Const):
                rows = [r for r in rows if r[left.name] is not None and
                        folding.compare("EQ", r[left.name], other.value) is True]
            elif key_expr is None:
                key_expr, key_col = other, left.name
            else:
                raise FusedCompileError(f"{where}: join to {name} uses more than one non-constant key")
        if key_expr is None or key_col is None:
            raise FusedCompileError(f"{where}: join to {name} has no key from the request")
        keys = [r[key_col] for r in rows]
        if len(set(keys)) != len(keys):
            raise FusedCompileError(f"{where}: join key {name}.{key_col} is not unique; a row-level lookup needs unique keys")
        index = self.lookup_index(key_expr, keys, types[key_col], f"{name}.{key_col}")
        scope = Scope()
        for column in frozen.column_names:
            values = [r[column] for r in rows]
            scope.columns[column] = (lambda values=values, col=column: self.gather(values, types[col], index,
                                                                                   f"{name}.{col}"))
        return scope

    def lookup_index(self, key: Value, keys: list[Any], key_type: SqlType, what: str, offset: int = 0) -> str:
        """int64: the row whose key equals ``key``, or -1; plus ``offset``, folded into the tables."""
        c = self.c
        g = c.g
        if isinstance(key, Str) and key_type == VARCHAR:
            if not key.cleaned:
                index = c.op("LabelEncoder", [key.raw], "lookup", domain="ai.onnx.ml", keys_strings=[str(k) for k in keys],
                             values_int64s=[i + offset for i in range(len(keys))], default_int64=offset - 1)
                if key.raw_null is not None or key.nullif_empty:
                    index = c.op("Where", [c.null_mask(key) or g.false(), g.i64(offset - 1), index])
                if offset == 0 and len(keys) < MAX_CODED_ROWS:
                    self._row_lookups[index] = len(keys)
                return index
            if len(keys) > MAX_PATTERN_KEYS:
                raise FusedCompileError(f"lookup in {what}: {len(keys)} keys compared after cleanup is over the "
                                        f"{MAX_PATTERN_KEYS} limit")
            index, mapping = c.codes.lookup(key, [str(k) for k in keys], offset)
            if offset == 0:
                self._coded_lookups[index] = (c.codes.code(key), mapping)
            return index
        if isinstance(key, IntText) and key_type == VARCHAR:
            # CAST(n AS VARCHAR) = k: only keys that are an integer's canonical digits can match.
            ints = {int(k): i for i, k in enumerate(keys) if isinstance(k, str) and k == str(_int_or_none(k))}
            return self._int_lookup(key.number, list(ints), list(ints.values()), offset)
        if isinstance(key, Num) and key.type.kind == "integer" and key_type.kind == "integer":
            return self._int_lookup(key, [int(k) for k in keys], list(range(len(keys))), offset)
        raise FusedCompileError(f"lookup in {what}: the key types do not match (key {key_type}, request "
                                f"{getattr(key, 'type', type(key).__name__)}); cast one side explicitly")

    def _int_lookup(self, key: Num, keys: list[int], rows: list[int], offset: int) -> str:
        c = self.c
        g = c.g
        as_int = c.op("Cast", [key.value], "as_int", to=7)  # INT64; exact where the key is not unsure
        index = c.op("LabelEncoder", [as_int], "lookup", domain="ai.onnx.ml", keys_int64s=keys or [0],
                     values_int64s=[r + offset for r in rows] if keys else [offset - 1], default_int64=offset - 1)
        if key.null is not None:
            index = c.op("Where", [key.null, g.i64(offset - 1), index])
        if offset == 0 and len(rows) < MAX_CODED_ROWS:
            self._row_lookups[index] = len(rows)
        return index

    def gather(self, values: list[Any], kind: SqlType, index: str, what: str) -> Value:
        c = self.c
        if kind == LIST:
            return ListLookup(tuple(tuple(v) if v is not None else None for v in values), index)
        if kind == VARCHAR:
            raise FusedCompileError(f"{what}: string columns of frozen tables can only be join keys")
        python = [folding.to_python(v, kind) for v in values]
        if index in self._coded_lookups:
            code, mapping = self._coded_lookups[index]
            return Coded(code, tuple(None if m < 0 else python[m] for m in mapping), kind)
        if index in self._row_lookups:  # Gather reads index -1 from the end: the "no row" slot
            return Coded(index, tuple(python) + (None,), kind)
        if kind == TIMESTAMP:  # int64 microseconds; the last slot (index -1, no row) is NULL
            micros = [INT64_NULL if v is None else micros(v) for v in python] + [INT64_NULL]
            value = c.op("Gather", [c.g.const(micros, np.int64), index], "gather")
            present = [m for m in micros if m != INT64_NULL]
            return Num(value, c.op("Equal", [value, c.g.i64(INT64_NULL)], "isnull"), TIMESTAMP,
                       Facts(float(min(present, default=0)), float(max(present, default=0)), may_nan=False, integral=True))
        # The last slot is "no row": Gather reads index -1 from the end, so a miss is NaN (NULL).
        scale = 10.0 ** kind.scale if kind.kind == "decimal" else 1.0
        numeric = [np.nan if v is None else float(v) * scale for v in python] + [np.nan]
        value = c.op("Gather", [c.g.const(numeric, np.float64), index], "gather")
        present = [x for x in numeric if not np.isnan(x)]
        facts = Facts(min(present, default=0.0), max(present, default=0.0), may_nan=False,
                      integral=all(float(x).is_integer() for x in present), nan_is_null=True)
        return Num(value, c.op("IsNaN", [value], "isnull"), kind, facts)


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
