"""Compile the bundle's serving SQL into ONNX operators in front of the model ("fused" model).

The result is one ONNX file that takes raw fields and returns the model's outputs plus the
feature vector, runnable by any ONNX Runtime. The compiler understands a documented subset of
SQL (see ``SUPPORTED``); anything else raises ``FusedCompileError`` naming the expression, and
the pipeline keeps the SQL path for that model: it never emits a silently different graph.

Graph inputs, one per raw field the features use, shape [N]:

- double fields: float64, NaN for SQL NULL;
- integer fields: int64, ``INT64_NULL`` (the smallest int64) for NULL;
- boolean fields: bool (must not be null);
- string fields: string, ``STRING_NULL`` ("\\0") for NULL;
- timestamps: float64 seconds since 1970-01-01 (UTC, as DuckDB's ``epoch()``), NaN for NULL.

Every SQL value is carried as a (value, null mask) pair so NULL follows SQL semantics.
Frozen single-row tables are folded into constants; joins to frozen tables (vocabularies, entity
snapshots) become lookups (``LabelEncoder`` on exact keys; for keys cleaned by trim/lower/upper, a
per-field string code, see ``_Compiler.emit_string_codes``), and ``list_contains`` on a snapshot's
list becomes a (row, value) pair lookup. ONNX Runtime pays per node, so values that depend on one
code or one looked-up row are folded at compile time into a table (``Coded``), and the compiler
shares repeated subexpressions and drops nodes no output needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import pyarrow as pa
import sqlglot
from onnx import TensorProto, helper, numpy_helper
from sqlglot import exp

from serving.bundle import InputField
from serving.fused import FEATURES_OUTPUT, INT64_NULL, STRING_NULL
from training.errors import FusedCompileError

OPSET = 20
ML_OPSET = 4
MAX_REGEX_KEYS = 512
MAX_CODED_ROWS = 1 << 17
"""Frozen tables up to this many rows are folded code by code (values derived from a looked-up
row become one table); bigger ones are looked up and computed on tensors at run time."""
SUPPORTED = (
    "+ - * /, comparisons, AND/OR/NOT; CASE WHEN; COALESCE, NULLIF, IS [NOT] NULL; LN, LOG10, EXP, "
    "SQRT, ABS, POWER, LEAST, GREATEST, FLOOR, CEIL, ROUND; CAST; string = and IN against constants "
    "(after TRIM/LOWER/UPPER/NULLIF(x, '')); HOUR, ISODOW, DAY, MONTH, EPOCH of timestamps; single-row "
    "frozen tables as constants; LEFT JOIN lookups in frozen tables; LIST_CONTAINS on a looked-up list"
)

_ONNX_TYPE = {"double": TensorProto.DOUBLE, "integer": TensorProto.INT64, "boolean": TensorProto.BOOL,
              "string": TensorProto.STRING, "timestamp": TensorProto.DOUBLE}


# ---------------------------------------------------------------- symbolic values


@dataclass(frozen=True)
class Const:
    """A value known at compile time (numbers, strings, booleans or None for NULL)."""

    value: Any


@dataclass(frozen=True)
class Num:
    """float64 tensor [N]; ``null`` names a bool mask tensor or is None when never null."""

    value: str
    null: str | None


@dataclass(frozen=True)
class Bool:
    value: str
    null: str | None
    false_when_null: bool = False
    """``value`` is already False wherever ``null`` is set, so "true and not null" is just ``value``."""


@dataclass(frozen=True)
class Str:
    """A raw string input after trim/case/nullif('') cleanup, kept symbolic until compared."""

    raw: str
    raw_null: str | None
    trim: bool = False
    case: str | None = None
    nullif_empty: bool = False

    @property
    def cleaned(self) -> bool:
        return self.trim or self.case is not None


@dataclass(frozen=True)
class ListLookup:
    """A list column of a frozen table, at the rows a lookup found (index -1: no row)."""

    lists: tuple[tuple[Any, ...] | None, ...]
    index: str


@dataclass(frozen=True)
class Coded:
    """A value that depends on one cleaned string field only: its value for each string code
    (see ``_Compiler.emit_string_codes``). Operations on it are evaluated at compile time, code
    by code, with the compiler's own constant folding; a tensor is one ``Gather`` when needed."""

    code: str
    table: tuple[Any, ...]


Value = Const | Num | Bool | Str | ListLookup | Coded
_OTHER_TEXT = object()  # the cleaned text of a row matching none of the field's constants


@dataclass
class _Scope:
    """Columns of a relation: name -> thunk that compiles (once) to a Value."""

    columns: dict[str, Callable[[], Value]] = field(default_factory=dict)
    cache: dict[str, Value] = field(default_factory=dict)

    def get(self, name: str, where: str) -> Value:
        if name not in self.columns:
            raise FusedCompileError(f"column {name!r} is not available in {where}")
        if name not in self.cache:
            self.cache[name] = self.columns[name]()
        return self.cache[name]


# ---------------------------------------------------------------- graph building


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: dict[str, onnx.ValueInfoProto] = {}
        self._n = 0
        self._consts: dict[tuple[Any, ...], str] = {}
        self._ops: dict[tuple[Any, ...], str] = {}
        self.fixed: set[str] = set()
        """Tensors that do not depend on the request (constants and what is computed from them only):
        they stay [1] and broadcast, so no node is spent expanding them to [N]."""

    def name(self, hint: str) -> str:
        self._n += 1
        return f"sql_{hint}_{self._n}"

    def op(self, op_type: str, inputs: list[str], hint: str = "", domain: str = "", **attrs: Any) -> str:
        # The same operation on the same tensors is computed once: the SQL repeats itself (a null
        # test per use of a column, a row index per looked-up column) and every node costs time.
        key = (op_type, domain, tuple(inputs), repr(sorted(attrs.items())))
        if key in self._ops:
            return self._ops[key]
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain or None, **attrs))
        if all(i in self.fixed for i in inputs):
            self.fixed.add(out)
        self._ops[key] = out
        return out

    def const(self, value: Any, dtype: Any) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes() if array.dtype != object else tuple(array.ravel()))
        if key not in self._consts:
            name = self.name("const")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
            self.fixed.add(name)
        return self._consts[key]


# ---------------------------------------------------------------- the compiler


_CleanKey = tuple[str, bool, "str | None"]  # (raw field, trim, case): one string code each


class _Compiler:
    """Compiles in two passes: the first only learns which constants each cleaned string field is
    compared with (``universes``), the second emits the graph with every such field's string code
    computed once, up front (see ``emit_string_codes``)."""

    def __init__(self, sql: str, schema: tuple[InputField, ...], tables: dict[str, pa.Table],
                 universes: dict[_CleanKey, tuple[str, ...]] | None = None) -> None:
        self.g = _Graph()
        self.learning = universes is None
        self.universes: dict[_CleanKey, dict[str, None]] = {k: dict.fromkeys(v) for k, v in (universes or {}).items()}
        self._codes: dict[_CleanKey, str] = {}
        self._coded_lookups: dict[str, tuple[str, tuple[int, ...]]] = {}
        # Tensors that are NaN wherever they are NULL (double inputs, folded tables, and IEEE
        # arithmetic on those): the feature matrix encodes NULL as NaN, so they need no mask there.
        self.nan_null: set[str] = set()
        # Tensors holding whole numbers, which a cast to an integer leaves as they are.
        self.integral: set[str] = set()
        self._row_lookups: dict[str, int] = {}  # exact lookup index -> rows of its table
        self.fields = {f.name: f for f in schema}
        self.tables = tables
        self.tree = sqlglot.parse_one(sql, read="duckdb")
        self.ctes = {cte.alias: cte.this for cte in self.tree.find_all(exp.CTE)}
        self.cte_scopes: dict[str, _Scope] = {}
        self._raw: dict[str, Value] = {}
        self._ref: str | None = None  # a raw input tensor, for shaping constants to [N]
        self._equals: dict[tuple[Any, ...], str] = {}
        self._shape: str | None = None
        self._expanded: dict[str, str] = {}
        self._false: str | None = None

    # ---- raw inputs

    def raw(self, name: str) -> Value:
        if name not in self._raw:
            f = self.fields.get(name)
            if f is None:
                raise FusedCompileError(f"request field {name!r} is not in the bundle's input schema")
            self.g.inputs[name] = helper.make_tensor_value_info(name, _ONNX_TYPE[f.type], [None])
            self._ref = self._ref or name
            if f.type == "string":
                null = self.g.op("Equal", [name, self.g.const(STRING_NULL, object)], "isnull") if f.nullable else None
                self._raw[name] = Str(name, null)
            elif f.type in ("double", "timestamp"):
                null = self.g.op("IsNaN", [name], "isnull") if f.nullable else None
                self._raw[name] = Num(name, null)
                self.nan_null.add(name)
            elif f.type == "integer":
                null = self.g.op("Equal", [name, self.g.const(INT64_NULL, np.int64)], "isnull") if f.nullable else None
                self._raw[name] = Num(self.g.op("Cast", [name], "asdouble", to=TensorProto.DOUBLE), null)
            else:
                self._raw[name] = Bool(name, None)
        return self._raw[name]

    # ---- relations

    def scope_of(self, relation: str) -> _Scope:
        if relation == "request":
            return _Scope({n: (lambda n=n: self.raw(n)) for n in self.fields})
        if relation in self.ctes:
            if relation not in self.cte_scopes:
                self.cte_scopes[relation] = self.select_scope(self.ctes[relation], relation)
            return self.cte_scopes[relation]
        raise FusedCompileError(f"relation {relation!r} is neither the request, a CTE nor a frozen table")

    def select_scope(self, select: exp.Expression, where: str) -> _Scope:
        if not isinstance(select, exp.Select):
            raise FusedCompileError(f"{where}: only SELECT ... FROM ... [JOIN ...] is supported, got {select.sql('duckdb')[:80]}")
        for banned in ("group", "having", "qualify", "limit", "distinct"):
            if select.args.get(banned):
                raise FusedCompileError(f"{where}: {banned.upper()} is not row-level; not supported")
        aliases: dict[str, _Scope] = {}
        from_ = (select.args.get("from_") or select.args.get("from")).this
        aliases[from_.alias_or_name] = self.relation(from_, where)
        default = from_.alias_or_name
        for join in select.args.get("joins") or []:
            aliases[join.this.alias_or_name] = self.join(join, aliases, where)
        out = _Scope()
        for projection in select.expressions:
            if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)):
                source = aliases[projection.table] if isinstance(projection, exp.Column) and projection.table else aliases[default]
                for name in source.columns:
                    out.columns[name] = (lambda s=source, n=name: s.get(n, where))
                continue
            name = projection.alias_or_name
            node = projection.this if isinstance(projection, exp.Alias) else projection
            out.columns[name] = (lambda node=node: self.expr(node, aliases, default, where))
        return out

    def relation(self, table: exp.Expression, where: str) -> _Scope:
        if not isinstance(table, exp.Table):
            raise FusedCompileError(f"{where}: subqueries in FROM are not supported: {table.sql('duckdb')[:80]}")
        name = table.name
        if name in self.tables:
            frozen = self.tables[name]
            if frozen.num_rows != 1:
                raise FusedCompileError(f"{where}: frozen table {name!r} has {frozen.num_rows} rows; only a "
                                        "single-row table can be used without a join condition")
            row = frozen.to_pylist()[0]
            return _Scope({c: (lambda v=row[c]: Const(v)) for c in frozen.column_names})
        return self.scope_of(name)

    def join(self, join: exp.Join, aliases: dict[str, _Scope], where: str) -> _Scope:
        table = join.this
        name, alias = table.name, table.alias_or_name
        kind = (join.args.get("side") or "") + (join.args.get("kind") or "")
        if name in self.tables and kind.upper() == "CROSS" or (name in self.tables and join.args.get("on") is None):
            return self.relation(table, where)
        if name not in self.tables or kind.upper() not in ("LEFT", "LEFTOUTER"):
            raise FusedCompileError(f"{where}: only LEFT JOIN to a frozen table (or CROSS JOIN to a single-row one) "
                                    f"is supported, got {join.sql('duckdb')[:100]}")
        rows = self.tables[name].to_pylist()
        key_expr, key_col = None, None
        for cond in _conjuncts(join.args["on"]):
            if not isinstance(cond, exp.EQ):
                raise FusedCompileError(f"{where}: join condition must be equalities joined by AND, got {cond.sql('duckdb')}")
            left, right = cond.this, cond.expression
            if isinstance(right, exp.Column) and right.table == alias:
                left, right = right, left
            if not (isinstance(left, exp.Column) and left.table == alias):
                raise FusedCompileError(f"{where}: join condition {cond.sql('duckdb')} does not compare a column of {alias}")
            other = self.expr(right, aliases, None, where)
            if isinstance(other, Const):
                rows = [r for r in rows if r[left.name] == other.value]
            elif key_expr is None:
                key_expr, key_col = other, left.name
            else:
                raise FusedCompileError(f"{where}: join to {name} uses more than one non-constant key")
        if key_expr is None or key_col is None:
            raise FusedCompileError(f"{where}: join to {name} has no key from the request")
        keys = [r[key_col] for r in rows]
        if len(set(keys)) != len(keys):
            raise FusedCompileError(f"{where}: join key {name}.{key_col} is not unique; a row-level lookup needs unique keys")
        index = self.lookup_index(key_expr, keys, f"{name}.{key_col}")
        scope = _Scope()
        for column in self.tables[name].column_names:
            values = [r[column] for r in rows]
            scope.columns[column] = (lambda values=values, col=column: self.gather(values, index, f"{name}.{col}"))
        return scope

    def lookup_index(self, key: Value, keys: list[Any], what: str, offset: int = 0) -> str:
        """int64 [N]: the row whose key equals ``key``, or -1; plus ``offset``, folded into the tables."""
        if isinstance(key, Str) and not key.cleaned:
            index = self.g.op("LabelEncoder", [key.raw], "lookup", domain="ai.onnx.ml", keys_strings=[str(k) for k in keys],
                              values_int64s=[i + offset for i in range(len(keys))], default_int64=offset - 1)
            if key.raw_null is not None or key.nullif_empty:
                index = self.g.op("Where", [self.null_mask(key) or self.false(), self.g.const(offset - 1, np.int64), index])
            if offset == 0 and len(keys) < MAX_CODED_ROWS:
                self._row_lookups[index] = len(keys)
            return index
        if isinstance(key, Str):
            if len(keys) > MAX_REGEX_KEYS:
                raise FusedCompileError(f"lookup in {what}: {len(keys)} keys compared after cleanup is over the "
                                        f"{MAX_REGEX_KEYS} limit")
            return self.cleaned_lookup(key, [str(k) for k in keys], offset)
        raise FusedCompileError(f"lookup in {what}: only string keys are supported")

    def gather(self, values: list[Any], index: str, what: str) -> Value:
        present = [v for v in values if v is not None]
        if present and isinstance(present[0], (list, tuple)):
            return ListLookup(tuple(tuple(v) if v is not None else None for v in values), index)
        if present and isinstance(present[0], str):
            raise FusedCompileError(f"{what}: string columns of frozen tables can only be join keys")
        if index in self._coded_lookups:
            code, mapping = self._coded_lookups[index]
            return Coded(code, tuple(None if m < 0 or values[m] is None else _to_number(values[m]) for m in mapping))
        if index in self._row_lookups:  # Gather reads index -1 from the end: the "no row" slot
            return Coded(index, tuple(None if v is None else _to_number(v) for v in values) + (None,))
        # The last slot is "no row": Gather reads index -1 from the end, so a miss is NaN (NULL).
        numeric = [_to_number(v) for v in values] + [np.nan]
        value = self.g.op("Gather", [self.g.const(numeric, np.float64), index], "gather")
        return Num(value, self.g.op("IsNaN", [value], "isnull"))

    # ---- helpers over values

    def false(self) -> str:
        if self._false is None:
            self._false = self.g.const([False], np.bool_)
        return self._false

    def shape_like(self, tensor: str) -> str:
        """``tensor`` as [N] (N = rows in the request): constants are [1] until a feature needs all rows."""
        if tensor not in self.g.fixed:
            return tensor
        if self._shape is None:
            self.raw(self._ref or next(iter(self.fields)))
            self._shape = self.g.op("Shape", [self._ref], "n")
        if tensor not in self._expanded:
            self._expanded[tensor] = self.g.op("Expand", [tensor, self._shape], "expand")
        return self._expanded[tensor]

    def coded(self, s: Str) -> Coded:
        """The cleaned text of ``s`` per code: NULL, '' (NULL under NULLIF), other, the constants."""
        universe = tuple(self.universes.get((s.raw, s.trim, s.case), {}))
        return Coded(self.code(s), (None, None if s.nullif_empty else "", _OTHER_TEXT, *universe))

    def elementwise(self, fn: Callable[..., Value], values: list[Value]) -> Value | None:
        """``fn`` folded code by code when every argument is a constant or Coded on one field; else None."""
        codes = {v.code for v in values if isinstance(v, Coded)}
        if len(codes) != 1 or not all(isinstance(v, (Coded, Const)) for v in values):
            return None
        sizes = {len(v.table) for v in values if isinstance(v, Coded)}
        if len(sizes) > 1 and not self.learning:  # in pass one a field's constants are still being found
            raise AssertionError(f"codes of different sizes for {codes}")
        out = []
        for i in range(max(sizes)):
            try:
                folded = fn(*(Const(v.table[i] if i < len(v.table) else None) if isinstance(v, Coded) else v
                              for v in values))
            except (FusedCompileError, TypeError, ZeroDivisionError, OverflowError):
                return None  # not foldable constant by constant: computed on tensors instead
            if not isinstance(folded, Const):
                return None
            out.append(folded.value)
        return Coded(codes.pop(), tuple(out))

    def gathered(self, v: Coded, dtype: Any, fill: Any) -> str:
        table = [fill if x is None or x is _OTHER_TEXT else x for x in v.table]
        out = self.g.op("Gather", [self.g.const(table, dtype), v.code], "coded")
        if dtype is np.float64 and all(x is None or (isinstance(x, (int, float)) and not np.isnan(x)) for x in v.table):
            self.nan_null.add(out)
        if all(x is None or (isinstance(x, (int, float)) and float(x).is_integer()) for x in v.table):
            self.integral.add(out)
        return out

    def null_mask(self, v: Value) -> str | None:
        if isinstance(v, Coded):
            return self.gathered(Coded(v.code, tuple(x is None for x in v.table)), np.bool_, False) \
                if any(x is None for x in v.table) else None
        if isinstance(v, Const):
            return None
        if isinstance(v, Str):
            if v.cleaned and v.nullif_empty:  # NULL or cleaned to ''
                return self.g.op("LessOrEqual", [self.code(v), self.g.const(_CODE_EMPTY, np.int64)], "isnull")
            masks = [m for m in (v.raw_null, self.string_equals(v, "") if v.nullif_empty else None) if m]
            return self.any(masks)
        if isinstance(v, ListLookup):
            return None
        return v.null

    def any(self, masks: list[str | None]) -> str | None:
        masks = list(dict.fromkeys(m for m in masks if m))  # the same mask twice would be a wasted Or
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = self.g.op("Or", [out, m])
        return out

    def num(self, v: Value, where: str) -> Num:
        if isinstance(v, Num):
            return v
        if isinstance(v, Coded):
            if not all(x is None or isinstance(x, (bool, int, float)) for x in v.table):
                raise FusedCompileError(f"{where}: expected a number, got a string")
            return Num(self.gathered(v, np.float64, np.nan), self.null_mask(v))
        if isinstance(v, Bool):
            return Num(self.g.op("Cast", [v.value], "num", to=TensorProto.DOUBLE), v.null)
        if isinstance(v, Const) and (v.value is None or isinstance(v.value, (int, float))):
            value = np.nan if v.value is None else float(v.value)
            tensor = self.g.const([value], np.float64)
            return Num(tensor, self.g.op("IsNaN", [tensor]) if v.value is None else None)
        raise FusedCompileError(f"{where}: expected a number, got {v}")

    def boolean(self, v: Value, where: str) -> Bool:
        if isinstance(v, Bool):
            return v
        if isinstance(v, Coded) and all(x is None or isinstance(x, bool) for x in v.table):
            return Bool(self.gathered(v, np.bool_, False), self.null_mask(v))
        if isinstance(v, Const) and (v.value is None or isinstance(v.value, bool)):
            tensor = self.g.const([bool(v.value)], np.bool_)
            return Bool(tensor, self.g.const([True], np.bool_) if v.value is None else None)
        raise FusedCompileError(f"{where}: expected a boolean, got {v}")

    def string_equals(self, s: Str, constant: str) -> str:
        """bool [N]: cleaned(s) == constant (ignoring NULL; callers combine the null mask).

        Memoised: vocabulary lookups and list membership often test the same field against the
        same values, and each test is a node every request pays for.
        """
        key = (s.raw, s.trim, s.case, constant)
        if key not in self._equals:
            self._equals[key] = self._string_equals(s, constant)
        return self._equals[key]

    # ---- cleaned strings: one code per field
    #
    # ONNX Runtime pays per node, and a regex per (field, constant) made string work most of the
    # graph. Instead each cleaned field (trim/lower/upper of one raw input) becomes one int64
    # "string code": NULL, EMPTY (cleans to ''), OTHER, or _CODE_BASE + the position of the
    # constant it cleans to among the constants the SQL compares it with. An exact LabelEncoder
    # over each constant's ASCII case and single-space-padded variants gives the code of most raw
    # values in one node; only when some row of some field misses that table (padded more,
    # unseen, or non-ASCII text) does one If run the regexes, which decide those rows exactly as
    # a regex per constant always did.

    def position(self, s: Str, constant: str) -> int | None:
        """Code offset of ``constant`` in ``s``'s universe; None when no raw value can clean to it."""
        if _cleaned_pattern(s, constant) is None:  # also refuses constants that cannot compile exactly
            return None
        if constant == "":
            return None
        universe = self.universes.setdefault((s.raw, s.trim, s.case), {})
        if constant not in universe:
            if not self.learning:
                raise AssertionError(f"constant {constant!r} for {s.raw} was not seen in the first pass")
            universe[constant] = None
        return list(universe).index(constant)

    def code(self, s: Str) -> str:
        key = (s.raw, s.trim, s.case)
        if self.learning:
            self.universes.setdefault(key, {})
            return f"code_of_{s.raw}"  # pass one discards its graph
        return self._codes[key]

    def emit_string_codes(self) -> None:
        """The codes of every cleaned string field, first in the graph (pass two only)."""
        g = self.g
        keys = list(self.universes)
        if not keys:
            return
        exact, fallback = [], []
        for raw, trim, case in keys:
            s = Str(raw, None, trim, case)
            self.raw(raw)
            table = _code_table(s, list(self.universes[(raw, trim, case)]))
            exact.append(g.op("LabelEncoder", [raw], "code_exact", domain="ai.onnx.ml", keys_strings=list(table),
                              values_int64s=list(table.values()), default_int64=_CODE_MISS))
        joined = exact[0] if len(exact) == 1 else g.op("Concat", exact, "codes_exact", axis=0)
        all_hit = g.op("GreaterOrEqual", [g.op("ReduceMin", [joined], "codes_min", keepdims=0),
                                          g.const(_CODE_MISS + 1, np.int64)], "codes_all_exact")
        out = g.name("codes")
        hit_out, miss_out = g.name("codes_hit"), g.name("codes_miss")
        then_branch = helper.make_graph([helper.make_node("Identity", [joined], [hit_out])], g.name("all_exact"), [],
                                        [helper.make_tensor_value_info(hit_out, TensorProto.INT64, [None])])
        nodes: list[onnx.NodeProto] = []
        for (raw, trim, case), exact_code in zip(keys, exact):
            fallback.append(self._regex_codes(Str(raw, None, trim, case), exact_code, nodes))
        nodes.append(helper.make_node("Concat", fallback, [miss_out], axis=0) if len(fallback) > 1
                     else helper.make_node("Identity", fallback, [miss_out]))
        else_branch = helper.make_graph(nodes, g.name("some_missed"), [],
                                        [helper.make_tensor_value_info(miss_out, TensorProto.INT64, [None])])
        g.nodes.append(helper.make_node("If", [all_hit], [out], then_branch=then_branch, else_branch=else_branch))
        if len(keys) == 1:
            self._codes[keys[0]] = out
            return
        split = [g.name("code") for _ in keys]
        g.nodes.append(helper.make_node("Split", [out], split, axis=0, num_outputs=len(keys)))
        self._codes.update(zip(keys, split))

    def _regex_codes(self, s: Str, exact: str, nodes: list[onnx.NodeProto]) -> str:
        """Nodes (for the If's else branch) giving every row of ``s`` its code: exact hits as they
        are, any other row by one full-match regex per constant."""
        g = self.g
        code = g.const([_CODE_OTHER], np.int64)
        tests = [(pattern, _CODE_BASE + i) for i, constant in enumerate(self.universes[(s.raw, s.trim, s.case)])
                 if (pattern := _cleaned_pattern(s, constant)) is not None]
        tests.append((_cleaned_pattern(s, ""), _CODE_EMPTY))
        for pattern, value in tests:
            hit, chained = g.name("match"), g.name("chain")
            nodes.append(helper.make_node("RegexFullMatch", [s.raw], [hit], pattern=pattern))
            nodes.append(helper.make_node("Where", [hit, g.const(value, np.int64), code], [chained]))
            code = chained
        is_exact, out = g.name("is_exact"), g.name("code_regex")
        # NULL ("\0") is always in the exact table, so exact hits cover it.
        nodes.append(helper.make_node("GreaterOrEqual", [exact, g.const(_CODE_MISS + 1, np.int64)], [is_exact]))
        nodes.append(helper.make_node("Where", [is_exact, exact, code], [out]))
        return out

    def _string_equals(self, s: Str, constant: str) -> str:
        if not s.cleaned:
            return self.g.op("Equal", [s.raw, self.g.const(constant, object)], "streq")
        if constant == "":
            _cleaned_pattern(s, constant)
            return self.g.op("Equal", [self.code(s), self.g.const(_CODE_EMPTY, np.int64)], "is_empty")
        position = self.position(s, constant)
        if position is None:
            return self.false()
        return self.g.op("Equal", [self.code(s), self.g.const(_CODE_BASE + position, np.int64)], "streq")

    def cleaned_lookup(self, key: Str, keys: list[str], offset: int = 0) -> str:
        """int64 [N]: the position in ``keys`` of the cleaned ``key``, or -1 (NULL never joins); plus ``offset``."""
        position = {k: i for i, k in enumerate(keys)}
        places = [(self.position(key, k), i) for i, k in enumerate(keys)]
        size = _CODE_BASE + len(self.universes.get((key.raw, key.trim, key.case), {}))
        mapping = np.full(size, -1, dtype=np.int64)
        for place, i in places:
            if place is not None:
                mapping[_CODE_BASE + place] = i
        if "" in position and not key.nullif_empty:
            mapping[_CODE_EMPTY] = position[""]
        index = self.g.op("Gather", [self.g.const(mapping + offset, np.int64), self.code(key)], "lookup")
        if offset == 0:
            self._coded_lookups[index] = (self.code(key), tuple(int(m) for m in mapping))
        return index

    # ---- expressions

    def expr(self, node: exp.Expression, aliases: dict[str, _Scope], default: str | None, where: str) -> Value:
        g = self.g
        e = lambda n: self.expr(n, aliases, default, where)  # noqa: E731
        sql = node.sql("duckdb")
        if isinstance(node, exp.Paren):
            return e(node.this)
        if isinstance(node, exp.Column):
            table = node.table or default
            if table not in aliases:
                raise FusedCompileError(f"{where}: column {sql} refers to unknown relation {table!r}")
            return aliases[table].get(node.name, f"{where} ({sql})")
        if isinstance(node, exp.Literal):
            return Const(node.this if node.is_string else _to_number(node.this))
        if isinstance(node, exp.Null):
            return Const(None)
        if isinstance(node, exp.Boolean):
            return Const(node.this)
        if isinstance(node, exp.Array) and not node.expressions:
            return Const(())
        if isinstance(node, exp.Neg):
            return self.arith("Neg", [e(node.this)], sql)
        if isinstance(node, exp.Add) and (counted := self.indicator_sum(node, e, sql)) is not None:
            return counted
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div)):
            op = {exp.Add: "Add", exp.Sub: "Sub", exp.Mul: "Mul", exp.Div: "Div"}[type(node)]
            return self.arith(op, [e(node.this), e(node.expression)], sql)
        if isinstance(node, (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)):
            return self.compare(type(node), e(node.this), e(node.expression), sql)
        if isinstance(node, exp.In):
            if node.args.get("query") or node.args.get("unnest"):
                raise FusedCompileError(f"{where}: IN (subquery) is not supported: {sql}")
            left = e(node.this)
            result: Value = Const(False)
            for item in node.expressions:
                result = self.logic("Or", result, self.compare(exp.EQ, left, e(item), sql), sql)
            return result
        if isinstance(node, (exp.And, exp.Or)):
            return self.logic("And" if isinstance(node, exp.And) else "Or", e(node.this), e(node.expression), sql)
        if isinstance(node, exp.Not):
            inner = e(node.this)
            if isinstance(inner, Const):
                return Const(None if inner.value is None else not inner.value)
            if isinstance(inner, Coded):
                return self.elementwise(lambda c: Const(None if c.value is None else not c.value), [inner]) or inner
            b = self.boolean(inner, sql)
            return Bool(g.op("Not", [b.value]), b.null)
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise FusedCompileError(f"{where}: only IS [NOT] NULL is supported: {sql}")
            inner = e(node.this)
            if isinstance(inner, Str) and inner.cleaned:
                inner = self.coded(inner)
            if isinstance(inner, Const):
                return Const(inner.value is None)
            if isinstance(inner, Coded):
                return self.elementwise(lambda c: Const(c.value is None), [inner]) or inner
            mask = self.null_mask(inner)
            return Const(False) if mask is None else Bool(mask, None)
        if isinstance(node, exp.Coalesce):
            return self.coalesce([e(node.this), *(e(x) for x in node.expressions)], sql)
        if isinstance(node, exp.Nullif):
            return self.nullif(e(node.this), e(node.expression), sql)
        if isinstance(node, (exp.Greatest, exp.Least)):
            return self.extreme("Max" if isinstance(node, exp.Greatest) else "Min",
                                [e(node.this), *(e(x) for x in node.expressions)], sql)
        if isinstance(node, (exp.Trim, exp.Lower, exp.Upper)):
            return self.clean(type(node), node, e(node.this), sql)
        if isinstance(node, exp.Cast):
            return self.cast(e(node.this), node.to, sql)
        if isinstance(node, (exp.Case, exp.If)):
            return self.case(node, e, sql)
        if isinstance(node, exp.ArrayContains):
            return self.list_contains(e(node.this), e(node.expression), sql)
        unary = {exp.Ln: "Log", exp.Exp: "Exp", exp.Sqrt: "Sqrt", exp.Abs: "Abs", exp.Floor: "Floor", exp.Ceil: "Ceil"}
        if type(node) in unary and not node.args.get("decimals"):
            return self.arith(unary[type(node)], [e(node.this)], sql)
        if isinstance(node, exp.Log):
            if node.expression is None:
                return self.arith("Log", [e(node.this)], sql)  # LOG(x) in DuckDB is log10
            raise FusedCompileError(f"{where}: LOG with a base is not supported: {sql}")
        if isinstance(node, exp.Pow):
            return self.arith("Pow", [e(node.this), e(node.expression)], sql)
        if isinstance(node, exp.Round):
            return self.round(e(node.this), node.args.get("decimals"), sql)
        if isinstance(node, (exp.Hour, exp.DayOfWeekIso, exp.Day, exp.Month, exp.TimeToUnix)):
            return self.time_part(type(node), e(node.this), sql)
        raise FusedCompileError(f"{where}: {type(node).__name__} is outside the compiled SQL subset: {sql} "
                                f"(supported: {SUPPORTED})")

    def indicator_sum(self, node: exp.Add, e: Callable[[exp.Expression], Value], sql: str) -> Value | None:
        """``cast(x >= c1 as integer) + cast(x >= c2 as integer) + ...`` (a bucket number) as one
        comparison of x against all the constants and a sum, instead of three nodes per term.
        None when the expression has another shape; the generic path compiles it then."""
        terms: list[exp.Expression] = []
        stack: list[exp.Expression] = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, exp.Paren):
                stack.append(n.this)
            elif isinstance(n, exp.Add):
                stack += [n.expression, n.this]
            else:
                terms.append(n)
        integer = (exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT)
        kinds = {exp.GT: "Greater", exp.GTE: "GreaterOrEqual", exp.LT: "Less", exp.LTE: "LessOrEqual"}
        if len(terms) < 3 or not all(isinstance(t, exp.Cast) and t.to.this in integer and type(t.this) in kinds
                                     for t in terms):
            return None
        if len({type(t.this) for t in terms}) != 1 or len({t.this.this.sql("duckdb") for t in terms}) != 1:
            return None
        x = e(terms[0].this.this)
        bounds = [e(t.this.expression) for t in terms]
        if not isinstance(x, Num) or not all(isinstance(b, Const) and isinstance(b.value, (int, float))
                                             and not isinstance(b.value, bool) for b in bounds):
            return None
        g = self.g
        column = g.op("Unsqueeze", [x.value, g.const([1], np.int64)], "as_column")
        hits = g.op(kinds[type(terms[0].this)], [column, g.const([[float(b.value) for b in bounds]], np.float64)], "cmp")
        counted = g.op("ReduceSum", [g.op("Cast", [hits], "num", to=TensorProto.DOUBLE), g.const([1], np.int64)],
                       "count", keepdims=0)
        return Num(counted, x.null)

    def arith(self, op: str, args: list[Value], sql: str) -> Value:
        if all(isinstance(a, Const) for a in args):
            return Const(_fold(op, [a.value for a in args]))
        if folded := self.elementwise(lambda *cs: self.arith(op, list(cs), sql), args):
            return folded
        nums = [self.num(a, sql) for a in args]
        if op == "Log" and "LOG(" in sql.upper() and "LN(" not in sql.upper():
            value = self.g.op("Div", [self.g.op("Log", [nums[0].value]), self.g.const(np.log(10.0), np.float64)])
        else:
            value = self.g.op(op, [n.value for n in nums], op.lower())
        self.propagate(value, op, nums)
        return Num(value, self.any([n.null for n in nums]))

    def propagate(self, out: str, op: str, args: list[Num]) -> None:
        """Record what ``out`` inherits: NaN for NULL through IEEE arithmetic; whole numbers through + - *."""
        if op in _NAN_PROPAGATING and all(a.null is None or a.value in self.nan_null for a in args):
            self.nan_null.add(out)
        if op in ("Floor", "Ceil", "Round") or (op in ("Add", "Sub", "Mul", "Neg", "Abs")
                                                and all(a.value in self.integral for a in args)):
            self.integral.add(out)

    def compare(self, kind: type, left: Value, right: Value, sql: str) -> Value:
        if isinstance(left, Const) and isinstance(right, Const):
            return Const(_fold(kind.__name__, [left.value, right.value]))
        if isinstance(right, Str) and isinstance(left, Const):
            left, right = right, left
        if (isinstance(left, Str) and left.cleaned and isinstance(right, Const) and isinstance(right.value, str)
                and kind in (exp.EQ, exp.NEQ)):
            self.position(left, right.value)  # the constant joins the field's codes
            left = self.coded(left)
        if folded := self.elementwise(lambda a, b: self.compare(kind, a, b, sql), [left, right]):
            return folded
        if isinstance(left, Str):
            if not isinstance(right, Const) or not isinstance(right.value, (str, type(None))) or kind not in (exp.EQ, exp.NEQ):
                raise FusedCompileError(f"string comparison must be = or <> against a constant: {sql}")
            if right.value is None:
                return Const(None)
            hit = self.string_equals(left, right.value)
            if kind is exp.NEQ:
                hit = self.g.op("Not", [hit])
            return Bool(hit, self.null_mask(left))
        op = {exp.EQ: "Equal", exp.NEQ: "Equal", exp.LT: "Less", exp.LTE: "LessOrEqual",
              exp.GT: "Greater", exp.GTE: "GreaterOrEqual"}[kind]
        a, b = self.num(left, sql), self.num(right, sql)
        value = self.g.op(op, [a.value, b.value], "cmp")
        if kind is exp.NEQ:
            value = self.g.op("Not", [value])
        return Bool(value, self.any([a.null, b.null]))

    def logic(self, op: str, left: Value, right: Value, sql: str) -> Value:
        if isinstance(left, Const) and isinstance(right, Const):
            return Const(_fold(op, [left.value, right.value]))
        if folded := self.elementwise(lambda a, b: self.logic(op, a, b, sql), [left, right]):
            return folded
        a, b = self.boolean(left, sql), self.boolean(right, sql)
        g = self.g
        value = g.op(op, [a.value, b.value])
        if a.null is None and b.null is None:
            return Bool(value, None)
        # Three-valued logic: AND is FALSE if either side is a known FALSE, else NULL if any NULL.
        a_known = g.op("Not", [a.null]) if a.null else None
        b_known = g.op("Not", [b.null]) if b.null else None
        decisive = "Not" if op == "And" else None
        def settled(v: Bool, known: str | None) -> str:
            side = g.op("Not", [v.value]) if decisive else v.value
            return g.op("And", [side, known]) if known else side
        any_null = self.any([a.null, b.null])
        decided = g.op("Or", [settled(a, a_known), settled(b, b_known)])
        return Bool(value, g.op("And", [any_null, g.op("Not", [decided])]))

    def coalesce(self, values: list[Value], sql: str) -> Value:
        if isinstance(values[0], ListLookup):
            if all(isinstance(v, Const) and v.value == () for v in values[1:]):
                return values[0]  # a missing list is an empty list for list_contains
            raise FusedCompileError(f"COALESCE of a list is only supported with []: {sql}")
        if folded := self.elementwise(lambda *cs: self.coalesce(list(cs), sql), values):
            return folded
        result = values[-1]
        for v in reversed(values[:-1]):
            if isinstance(v, Const):
                result = v if v.value is not None else result
                continue
            a, b = self.num(v, sql), self.num(result, sql)
            if a.null is None:
                result = a
                continue
            result = Num(self.g.op("Where", [a.null, b.value, a.value], "coalesce"),
                         self.g.op("And", [a.null, b.null]) if b.null else None)
        return result

    def nullif(self, value: Value, other: Value, sql: str) -> Value:
        if isinstance(value, Const) and isinstance(other, Const) and not isinstance(value.value, (str, tuple)):
            return Const(None if value.value is None or value.value == other.value else value.value)
        if folded := self.elementwise(lambda a, b: self.nullif(a, b, sql), [value, other]):
            return folded
        if isinstance(value, Coded):
            value = self.num(value, sql)
        if isinstance(value, Str) and isinstance(other, Const) and other.value == "":
            return Str(value.raw, value.raw_null, value.trim, value.case, True)
        if isinstance(value, (Num, Bool)) and isinstance(other, Const) and isinstance(other.value, (int, float)):
            a = self.num(value, sql)
            equal = self.g.op("Equal", [a.value, self.g.const(float(other.value), np.float64)])
            return Num(a.value, self.any([a.null, equal]))
        raise FusedCompileError(f"NULLIF is supported as NULLIF(string, '') or NULLIF(number, constant): {sql}")

    def extreme(self, op: str, values: list[Value], sql: str) -> Value:
        """DuckDB's GREATEST/LEAST ignore NULL arguments; NULL only if all are NULL."""
        result = values[0]
        for v in values[1:]:
            if isinstance(result, Const) and isinstance(v, Const):
                present = [x for x in (result.value, v.value) if x is not None]
                result = Const((max if op == "Max" else min)(present) if present else None)
                continue
            a, b = self.num(result, sql), self.num(v, sql)
            both = self.g.op(op, [a.value, b.value])
            value = both
            if b.null:
                value = self.g.op("Where", [b.null, a.value, value])
            if a.null:
                value = self.g.op("Where", [a.null, b.value, value])
            null = self.g.op("And", [a.null, b.null]) if a.null and b.null else None
            result = Num(value, null)
        return result

    def clean(self, kind: type, node: exp.Expression, value: Value, sql: str) -> Value:
        if isinstance(value, Const):
            text = value.value
            if text is None:
                return value
            return Const(text.strip(" ") if kind is exp.Trim else text.lower() if kind is exp.Lower else text.upper())
        if not isinstance(value, Str) or value.nullif_empty:
            raise FusedCompileError(f"{sql}: TRIM/LOWER/UPPER apply to raw string fields (before NULLIF)")
        if kind is exp.Trim:
            if node.args.get("expression") is not None or node.args.get("position"):
                raise FusedCompileError(f"{sql}: only TRIM(x) of spaces on both sides is supported")
            return Str(value.raw, value.raw_null, True, value.case)
        return Str(value.raw, value.raw_null, value.trim, "lower" if kind is exp.Lower else "upper")

    def cast(self, value: Value, to: exp.DataType, sql: str) -> Value:
        if isinstance(value, Coded) and (folded := self.elementwise(lambda c: self.cast(c, to, sql), [value])):
            return folded
        target = to.this
        T = exp.DataType.Type
        if target in (T.TEXT, T.VARCHAR):
            if isinstance(value, (Str, Const)) and (not isinstance(value, Const) or isinstance(value.value, (str, type(None)))):
                return value
        elif target in (T.DOUBLE, T.FLOAT, T.DECIMAL):
            if isinstance(value, Const):
                return Const(None if value.value is None else float(value.value))
            return self.num(value, sql)
        elif target in (T.INT, T.BIGINT, T.SMALLINT, T.TINYINT):
            if isinstance(value, Const):
                return Const(None if value.value is None else _round_half_away(float(value.value)))
            if isinstance(value, Bool):
                return self.num(value, sql)
            # DuckDB casts a DOUBLE to an integer rounding half to even, like ONNX Round (literals
            # are DECIMAL and round half away from zero: folded above).
            n = self.num(value, sql)
            if n.value in self.integral:
                return n
            rounded = self.g.op("Round", [n.value], "to_int")
            self.propagate(rounded, "Round", [n])
            return Num(rounded, n.null)
        elif target in (T.TIMESTAMP, T.TIMESTAMPNTZ, T.DATETIME):
            if isinstance(value, Num):
                return value
        elif target == T.BOOLEAN:
            if isinstance(value, (Bool, Const)):
                return value
        raise FusedCompileError(f"CAST of {type(value).__name__} to {to.sql('duckdb')} is not supported: {sql}")

    def round(self, value: Value, decimals: exp.Expression | None, sql: str) -> Value:
        """DuckDB rounds half away from zero (ONNX Round rounds half to even)."""
        places = 0
        if decimals is not None:
            if not isinstance(decimals, exp.Literal) or decimals.is_string:
                raise FusedCompileError(f"ROUND needs constant decimals: {sql}")
            places = int(decimals.this)
        if isinstance(value, Const):
            return Const(None if value.value is None else _round_half_away(float(value.value), places))
        g, n = self.g, self.num(value, sql)
        scale = g.const(10.0 ** places, np.float64)
        scaled = g.op("Mul", [n.value, scale])
        magnitude = g.op("Floor", [g.op("Add", [g.op("Abs", [scaled]), g.const(0.5, np.float64)])])
        rounded = g.op("Div", [g.op("Mul", [g.op("Sign", [scaled]), magnitude]), scale], "round")
        return Num(rounded, n.null)

    def case(self, node: exp.Expression, e: Callable[[exp.Expression], Value], sql: str) -> Value:
        if isinstance(node, exp.If):
            branches, default = [(node.this, node.args["true"])], node.args.get("false")
        else:
            if node.this is not None:  # CASE x WHEN v THEN ...: rewrite as CASE WHEN x = v
                branches = [(exp.EQ(this=node.this, expression=w.this), w.args["true"]) for w in node.args["ifs"]]
            else:
                branches = [(w.this, w.args["true"]) for w in node.args["ifs"]]
            default = node.args.get("default")
        result = e(default) if default is not None else Const(None)
        for condition, then in reversed(branches):
            cond, value = e(condition), e(then)
            if isinstance(cond, Const):
                result = value if cond.value else result
                continue
            if folded := self.elementwise(lambda c, a, b: a if c.value else b, [cond, value, result]):
                result = folded
                continue
            c = self.boolean(cond, sql)
            take = c.value if c.null is None or c.false_when_null else self.g.op("And", [c.value, self.g.op("Not", [c.null])])
            a, b = self.num(value, sql), self.num(result, sql)
            null_a = a.null or self.false()
            null_b = b.null or self.false()
            result = Num(self.g.op("Where", [take, a.value, b.value], "case"),
                         self.g.op("Where", [take, null_a, null_b]) if (a.null or b.null) else None)
        return result

    def list_contains(self, lists: Value, item: Value, sql: str) -> Value:
        if not isinstance(lists, ListLookup):
            raise FusedCompileError(f"LIST_CONTAINS is supported on a list looked up in a frozen table: {sql}")
        if not isinstance(item, Str):
            raise FusedCompileError(f"LIST_CONTAINS is supported for string items: {sql}")
        domain = sorted({v for row in lists.lists if row for v in row})
        if len(domain) > MAX_REGEX_KEYS and item.cleaned:
            raise FusedCompileError(f"LIST_CONTAINS over {len(domain)} distinct cleaned values is over the limit: {sql}")
        g = self.g
        # key = (row + 1) * width + (position + 1): a missing row (-1) or value (-1) lands in row or
        # column 0, which no listed pair uses, so no validity test is needed.
        width = len(domain) + 1
        shifted = self.lookup_index(item, domain, "list values", offset=width + 1)  # row*width + this = key
        pairs = sorted({(row_i + 1) * width + domain.index(v) + 1
                        for row_i, row in enumerate(lists.lists) if row for v in row})
        key = g.op("Add", [g.op("Mul", [lists.index, g.const(width, np.int64)]), shifted], "pair")
        found = g.op("LabelEncoder", [key], "inlist", domain="ai.onnx.ml", keys_int64s=pairs or [-1],
                     values_int64s=[1] * len(pairs) if pairs else [0], default_int64=0)
        hit = g.op("Cast", [found], "contains", to=TensorProto.BOOL)
        return Bool(hit, self.null_mask(item), false_when_null=True)  # a NULL item's key is in column 0

    def time_part(self, kind: type, value: Value, sql: str) -> Value:
        part = self._time_part(kind, value, sql)
        if isinstance(part, Num) and kind is not exp.TimeToUnix:
            self.integral.add(part.value)  # hours, days and months are whole; NaN (NULL) stays NaN
            if isinstance(value, Num) and (value.null is None or value.value in self.nan_null):
                self.nan_null.add(part.value)
        return part

    def _time_part(self, kind: type, value: Value, sql: str) -> Value:
        if isinstance(value, Coded):
            if kind is exp.TimeToUnix:
                return value
            value = self.num(value, sql)
        if not isinstance(value, Num):
            raise FusedCompileError(f"{sql}: expected a timestamp")
        g = self.g
        t = value.value
        if kind is exp.TimeToUnix:
            return value

        def floordiv(x: str, d: float) -> str:
            return g.op("Floor", [g.op("Div", [x, g.const(d, np.float64)])])

        days = floordiv(t, 86400.0)
        if kind is exp.Hour:
            seconds = g.op("Sub", [t, g.op("Mul", [days, g.const(86400.0, np.float64)])])
            return Num(floordiv(seconds, 3600.0), value.null)
        if kind is exp.DayOfWeekIso:  # 1970-01-01 was a Thursday (ISO 4)
            shifted = g.op("Add", [days, g.const(3.0, np.float64)])
            mod = g.op("Sub", [shifted, g.op("Mul", [floordiv(shifted, 7.0), g.const(7.0, np.float64)])])
            return Num(g.op("Add", [mod, g.const(1.0, np.float64)]), value.null)
        # Civil date from days since the epoch (H. Hinnant's algorithm), in float64 floor arithmetic.
        z = g.op("Add", [days, g.const(719468.0, np.float64)])
        era = floordiv(z, 146097.0)
        doe = g.op("Sub", [z, g.op("Mul", [era, g.const(146097.0, np.float64)])])
        yoe = floordiv(g.op("Sub", [g.op("Add", [g.op("Sub", [doe, floordiv(doe, 1460.0)]), floordiv(doe, 36524.0)]),
                                    floordiv(doe, 146096.0)]), 365.0)
        doy = g.op("Sub", [doe, g.op("Sub", [g.op("Add", [g.op("Mul", [yoe, g.const(365.0, np.float64)]),
                                                          floordiv(yoe, 4.0)]), floordiv(yoe, 100.0)])])
        mp = floordiv(g.op("Add", [g.op("Mul", [doy, g.const(5.0, np.float64)]), g.const(2.0, np.float64)]), 153.0)
        if kind is exp.Day:
            start = floordiv(g.op("Add", [g.op("Mul", [mp, g.const(153.0, np.float64)]), g.const(2.0, np.float64)]), 5.0)
            return Num(g.op("Add", [g.op("Sub", [doy, start]), g.const(1.0, np.float64)]), value.null)
        month = g.op("Where", [g.op("Less", [mp, g.const(10.0, np.float64)]),
                               g.op("Add", [mp, g.const(3.0, np.float64)]), g.op("Sub", [mp, g.const(9.0, np.float64)])])
        return Num(month, value.null)

    # ---- output

    def features(self, names: tuple[str, ...]) -> str:
        """Compile the final SELECT's columns named ``names`` into the float32 [N, F] matrix (NULL -> NaN).

        The columns are concatenated end to end and reshaped, and NULLs are set in one ``Where``:
        a handful of nodes whatever F is, where a Cast and an Unsqueeze per column were 2F.
        """
        final = self.tree
        if not isinstance(final, exp.Select):
            raise FusedCompileError("serving SQL must be a SELECT")
        body = final.copy()
        body.set("with_", None)
        body.set("with", None)
        scope = self.select_scope(body, "final select")
        values, nulls = [], []
        for name in names:
            value = scope.get(name, "final select")
            if isinstance(value, Const):
                if not isinstance(value.value, (int, float, type(None))):
                    raise FusedCompileError(f"feature {name!r} is a non-numeric constant")
            v = self.num(value, f"feature {name!r}")
            values.append(self.shape_like(v.value))
            nulls.append(None if v.value in self.nan_null else v.null)
        g = self.g
        nan = g.const(np.nan, np.float64)
        if sum(m is not None for m in nulls) <= 3:  # a Where per column is fewer nodes than building a mask
            values = [v if m is None else g.op("Where", [m, nan, v], "nan") for v, m in zip(values, nulls)]
            nulls = [None] * len(nulls)
        flat = g.op("Concat", values, "columns", axis=0)
        if any(nulls):
            masks = g.op("Concat", [self.shape_like(m or self.false()) for m in nulls], "nulls", axis=0)
            flat = g.op("Where", [masks, nan, flat], "nan")
        by_column = g.op("Reshape", [flat, g.const([len(names), -1], np.int64)], "by_column")
        return g.op("Cast", [g.op("Transpose", [by_column], "by_row", perm=[1, 0])], "f32", to=TensorProto.FLOAT)


_NAN_PROPAGATING = frozenset({"Add", "Sub", "Mul", "Div", "Neg", "Log", "Exp", "Sqrt", "Abs", "Floor", "Ceil", "Round"})
_CODE_MISS = -1  # not in the exact table: the row needs the regex fallback
_CODE_NULL, _CODE_EMPTY, _CODE_OTHER, _CODE_BASE = 0, 1, 2, 3


def _clean(s: Str, text: str) -> str:
    """What TRIM/LOWER/UPPER of ``s`` make of ``text`` (ASCII text only, where engines agree)."""
    if s.trim:
        text = text.strip(" ")
    if s.case is not None:
        text = text.lower() if s.case == "lower" else text.upper()
    return text


def _cleaned_pattern(s: Str, constant: str) -> str | None:
    """re2 full-match pattern for ``cleaned(s) == constant``, or None when no raw value can match."""
    if s.trim and constant != constant.strip(" "):
        return None  # trim(x) never starts or ends with a space
    if s.case == "lower" and constant != constant.lower() or s.case == "upper" and constant != constant.upper():
        return None  # lower(x) can never equal a string with upper-case letters
    if s.case is not None and any(ord(c) > 127 for c in constant):
        raise FusedCompileError(f"string comparison with {constant!r} after {s.case}(): only ASCII constants "
                                "are compiled (Unicode case mapping differs between engines)")
    body = re.escape(constant)
    if s.case is not None:
        body = f"(?i:{body})"
    pattern = f" *{body} *" if s.trim else body
    # re2 full match; (?s) so "." never matters and newlines are ordinary characters.
    return f"(?s){pattern}"


def _code_table(s: Str, universe: list[str]) -> dict[str, int]:
    """The exact LabelEncoder table of a cleaned field: raw strings whose code is certain.

    Each constant's ASCII case variants, bare and (under TRIM) padded with one space, plus the
    empty and space-only strings and the NULL marker. Codes are computed by ``_clean``, the SQL
    cleanup itself, so the table agrees with the regexes by construction."""
    position = {c: _CODE_BASE + i for i, c in enumerate(universe)}
    pads = ("", " ") if s.trim else ("",)
    candidates = {"", " ", "  "} if s.trim else {""}
    for constant in universe:
        for variant in {constant, constant.lower(), constant.upper(), constant.title(), constant.capitalize()}:
            candidates.update(left + variant + right for left in pads for right in pads)
    table = {}
    for text in sorted(candidates):
        if STRING_NULL in text or (s.case is not None and not text.isascii()):
            continue
        cleaned = _clean(s, text)
        table[text] = _CODE_EMPTY if cleaned == "" else position.get(cleaned, _CODE_OTHER)
    table[STRING_NULL] = _CODE_NULL
    return table


def _node_inputs(node: onnx.NodeProto) -> set[str]:
    """Tensors a node reads, including those its subgraphs (an If's branches) read from outside."""
    names = set(node.input)
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            inner = {name for n in attr.g.node for name in _node_inputs(n)}
            produced = {o for n in attr.g.node for o in n.output}
            names |= inner - produced
    return names - {""}


def _live(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes the outputs depend on, in order: compiled values the SQL computed but no feature
    uses (a row index whose lookups were all folded, say) would still cost time."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            keep.append(node)
            needed |= _node_inputs(node)
    return keep[::-1]


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    return [node]


def _to_number(v: Any) -> float:
    if v is None:
        return float("nan")
    if hasattr(v, "timestamp"):  # naive UTC datetimes from frozen tables
        import datetime as dt

        return (v - dt.datetime(1970, 1, 1)).total_seconds()
    return float(v)


def _round_half_away(x: float, places: int = 0) -> float:
    scale = 10.0 ** places
    return float(np.sign(x) * np.floor(abs(x) * scale + 0.5) / scale)


def _fold(op: str, args: list[Any]) -> Any:
    if any(a is None for a in args) and op not in ("Or", "And"):
        return None
    if op in ("And", "Or"):
        a, b = args
        if op == "And":
            return False if (a is False or b is False) else (None if a is None or b is None else True)
        return True if (a is True or b is True) else (None if a is None or b is None else False)
    a = args[0]
    b = args[1] if len(args) > 1 else None
    table = {
        "Add": lambda: a + b, "Sub": lambda: a - b, "Mul": lambda: a * b,
        "Div": lambda: a / b if b else (float("inf") if a > 0 else float("-inf") if a < 0 else float("nan")),
        "Neg": lambda: -a, "Log": lambda: float(np.log(a)), "Exp": lambda: float(np.exp(a)),
        "Sqrt": lambda: float(np.sqrt(a)), "Abs": lambda: abs(a), "Floor": lambda: float(np.floor(a)),
        "Ceil": lambda: float(np.ceil(a)), "Pow": lambda: a ** b,
        "EQ": lambda: a == b, "NEQ": lambda: a != b, "LT": lambda: a < b, "LTE": lambda: a <= b,
        "GT": lambda: a > b, "GTE": lambda: a >= b,
    }
    return table[op]()


@dataclass(frozen=True)
class FusedModel:
    """A fused ONNX model and what it needs."""

    onnx: bytes
    inputs: tuple[InputField, ...]
    """Raw fields the graph takes, in graph-input order (only those the features use)."""


def compile_fused(sql: str, schema: tuple[InputField, ...], tables: dict[str, pa.Table],
                  feature_names: tuple[str, ...], model_bytes: bytes) -> FusedModel:
    """Compile ``sql`` into ONNX operators and merge them in front of ``model_bytes``."""
    learner = _Compiler(sql, schema, tables)
    learner.features(feature_names)
    compiler = _Compiler(sql, schema, tables, {k: tuple(v) for k, v in learner.universes.items()})
    compiler.emit_string_codes()
    matrix = compiler.features(feature_names)
    g = compiler.g
    g.nodes.append(helper.make_node("Identity", [matrix], [FEATURES_OUTPUT]))

    model = onnx.load_from_string(model_bytes)
    model_input = model.graph.input[0].name
    prefix = "model_"
    renamed = onnx.compose.add_prefix(model, prefix)
    # Wire the model's (prefixed) input to the features tensor.
    for node in renamed.graph.node:
        node.input[:] = [FEATURES_OUTPUT if i == prefix + model_input else i for i in node.input]
    outputs = [helper.make_tensor_value_info(FEATURES_OUTPUT, TensorProto.FLOAT, [None, len(feature_names)])]
    for o in renamed.graph.output:
        outputs.append(o)
    nodes = _live(g.nodes + list(renamed.graph.node), [o.name for o in outputs])
    used = {name for node in nodes for name in _node_inputs(node)}
    inputs = [g.inputs[name] for name in compiler.fields if name in g.inputs and name in used]
    graph = helper.make_graph(
        nodes, "fused_features_and_model", inputs, outputs,
        initializer=[t for t in g.initializers + list(renamed.graph.initializer) if t.name in used],
    )
    opsets = {o.domain: o.version for o in model.opset_import}
    opsets[""] = max(opsets.get("", OPSET), OPSET)
    opsets["ai.onnx.ml"] = max(opsets.get("ai.onnx.ml", ML_OPSET), ML_OPSET)
    fused = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="warehouse-ml-pipeline fused compiler")
    fused.ir_version = min(fused.ir_version, 10)
    try:
        onnx.checker.check_model(fused, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise FusedCompileError(f"the fused graph does not validate: {exc}") from exc
    return FusedModel(fused.SerializeToString(), tuple(compiler.fields[i.name] for i in inputs))
