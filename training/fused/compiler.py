"""The compiler's core: raw inputs, the dispatch of SQL expressions to their emitters, and the
helpers every emitter shares (NULL and unsure masks, folding per string code, shapes).

The graph's inputs are the raw fields (one [N] tensor each) and, for entity state, the events of
each row's entity ([N, K] tensors plus a validity mask, see ``emitters.window``). A value is in
"row space" ([N]) or "event space" ([N, K]); ``op`` lines the two up so an emitter never has to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import sqlglot
from onnx import TensorProto, helper
from sqlglot import exp

from serving.bundle import InputField
from serving.fused import INT64_NULL, STRING_NULL
from training.errors import FusedCompileError
from training.fused import folding, types
from training.fused.codes import CODE_EMPTY, CleanKey, StringCodes
from training.fused.graph import Graph
from training.fused.types import BIGINT, EXACT_LIMIT, INPUT_TYPES, TIMESTAMP, SqlType
from training.fused.values import (Bool, Coded, Const, Facts, IntText, ListLookup, Num, OTHER_TEXT, Str, Value,
                                   type_of)

ONNX_TYPES = {"double": TensorProto.DOUBLE, "integer": TensorProto.INT64, "boolean": TensorProto.BOOL,
              "string": TensorProto.STRING, "timestamp": TensorProto.INT64}
"""Graph input types by raw field type: timestamps are int64 microseconds since 1970-01-01 (UTC)."""
MAX_DOUBLE = float(np.finfo(np.float64).max)

Eval = Callable[[exp.Expression], Value]


class Compiler:
    """Compiles one serving SQL statement. See ``training.fused.assemble`` for the two passes."""

    def __init__(self, sql: str, schema: tuple[InputField, ...], tables: dict[str, pa.Table],
                 universes: dict[CleanKey, tuple[str, ...]] | None = None,
                 entities: dict[str, Any] | None = None) -> None:
        from training.fused.scope import Scopes  # noqa: PLC0415 (scopes compile expressions through us)

        self.g = Graph()
        self.events: set[str] = set()
        """Tensors in event space ([N, K])."""
        self.codes = StringCodes(self.g, universes, op=self.op, events=self.events)
        self.fields = {f.name: f for f in schema}
        self.tables = tables
        self.entities = dict(entities or {})
        """Entity events relation -> its ``EntitySpec`` (the state windows read them)."""
        self.eager_unsure: list[str] = []
        """Unsure masks that hold whatever an expression does with the value (a window's)."""
        self.event_fields: dict[str, InputField] = {}
        """Event-space input tensor -> the raw field it holds."""
        try:
            self.tree = sqlglot.parse_one(sql, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise FusedCompileError(f"the serving SQL does not parse: {exc}") from exc
        self.scopes = Scopes(self)
        self.input_rank: dict[str, int] = {}
        self._raw: dict[str, Value] = {}
        self._ref: str | None = None  # a request input tensor, for shaping constants to [N]
        self._shape: str | None = None
        self._expanded: dict[str, str] = {}

    @property
    def learning(self) -> bool:
        return self.codes.learning

    # ---- inputs

    def raw(self, name: str) -> Value:
        """A request field as a value (a graph input, [N])."""
        f = self.fields.get(name)
        if f is None:
            raise FusedCompileError(f"request field {name!r} is not in the bundle's input schema")
        return self.input(name, f, rank=1)

    def input(self, tensor: str, f: InputField, rank: int) -> Value:
        if tensor in self._raw:
            return self._raw[tensor]
        g = self.g
        g.inputs[tensor] = helper.make_tensor_value_info(tensor, ONNX_TYPES[f.type], [None] * rank)
        self.input_rank[tensor] = rank
        if rank == 2:
            self.event_fields[tensor] = f
        if rank == 1:
            self._ref = self._ref or tensor
        else:
            self.events.add(tensor)
        kind = INPUT_TYPES[f.type]
        if f.type == "string":
            null = self.op("Equal", [tensor, g.const(STRING_NULL, object)], "isnull") if f.nullable else None
            value: Value = Str(tensor, null)
        elif f.type == "double":
            null = self.op("IsNaN", [tensor], "isnull") if f.nullable else None
            value = Num(tensor, null, kind, Facts(-MAX_DOUBLE, MAX_DOUBLE, may_nan=False, nan_is_null=True))
        elif f.type in ("integer", "timestamp"):
            null = self.op("Equal", [tensor, g.i64(INT64_NULL)], "isnull") if f.nullable else None
            if f.type == "timestamp":
                value = Num(tensor, null, TIMESTAMP, Facts(float(INT64_NULL + 1), float(2**63 - 1), may_nan=False,
                                                            integral=True))
            else:
                as_double = self.op("Cast", [tensor], "asdouble", to=TensorProto.DOUBLE)
                # Past 2**53 a BIGINT has no exact double: those rows are scored by the SQL path.
                limit = int(EXACT_LIMIT)  # compared in int64: the double of 2**53 + 1 is 2**53
                big = self.op("Or", [self.op("Greater", [tensor, g.i64(limit)]), self.op("Less", [tensor, g.i64(-limit)])],
                              "inexact")
                value = Num(as_double, null, BIGINT, Facts(-EXACT_LIMIT, EXACT_LIMIT, may_nan=False, integral=True),
                            unsure=self.op("And", [big, self.op("Not", [null])]) if null else big)
        else:
            value = Bool(tensor, None)
        self._raw[tensor] = value
        return value

    # ---- expressions

    def expr(self, node: exp.Expression, aliases: dict[str, Any], default: str | None, where: str) -> Value:
        from training.fused.emitters import EMITTERS, supported  # noqa: PLC0415

        e: Eval = lambda n: self.expr(n, aliases, default, where)  # noqa: E731
        if isinstance(node, exp.Paren):
            return e(node.this)
        if isinstance(node, exp.Column):
            table = node.table or default
            if table not in aliases:
                raise FusedCompileError(f"{where}: column {node.sql('duckdb')} refers to unknown relation {table!r}")
            return aliases[table].get(node.name, f"{where} ({node.sql('duckdb')})")
        construct = EMITTERS.get(type(node))
        if construct is None:
            raise FusedCompileError(f"{where}: {type(node).__name__} is outside the compiled SQL subset: "
                                    f"{node.sql('duckdb')[:120]} (supported: {supported()})")
        value = construct.emit(self, node, e)
        if isinstance(value, Const) and value.value is folding.ERROR:
            raise FusedCompileError(f"{where}: DuckDB raises an error for {node.sql('duckdb')[:120]} on every row")
        return value

    # ---- graph helpers

    def op(self, op_type: str, inputs: list[str], hint: str = "", **attrs: Any) -> str:
        """An elementwise node; a row-space input meeting an event-space one is seen as [N, 1]."""
        if any(i in self.events for i in inputs):
            inputs = [i if i in self.events or i in self.g.fixed else self.as_column(i) for i in inputs]
            out = self.g.op(op_type, inputs, hint, **attrs)
            self.events.add(out)
            return out
        return self.g.op(op_type, inputs, hint, **attrs)

    def as_column(self, tensor: str) -> str:
        return self.g.op("Unsqueeze", [tensor, self.g.i64([1])], "as_column")

    def any(self, masks: list[str | None]) -> str | None:
        masks = list(dict.fromkeys(m for m in masks if m))  # the same mask twice would be a wasted Or
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = self.op("Or", [out, m])
        return out

    def all(self, masks: list[str | None]) -> str | None:
        masks = list(dict.fromkeys(m for m in masks if m))
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = self.op("And", [out, m])
        return out

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

    def const_tensor(self, c: Const, where: str) -> Value:
        """A constant as a [1] tensor value of its type."""
        v = c.value
        if v is folding.ERROR:
            raise FusedCompileError(f"{where}: DuckDB raises an error for this expression on every row")
        kind = c.type
        if kind.kind == "boolean":
            return Bool(self.g.const([bool(v)], np.bool_), self.g.true() if v is None else None)
        if kind.kind == "timestamp" or (v is not None and hasattr(v, "timestamp")):
            micros = INT64_NULL if v is None else types.micros(v)
            return Num(self.g.i64([micros]), self.g.true() if v is None else None, TIMESTAMP,
                       Facts(float(micros), float(micros), may_nan=False, integral=True))
        if kind.kind in ("null", "integer", "decimal", "double", "float"):
            # A DECIMAL is held as its scaled integer (1.25 in DECIMAL(3,2) is 125.0), exactly.
            number = np.nan if v is None else float(int(v.scaleb(kind.scale))) if kind.kind == "decimal" else float(v)
            tensor = self.g.f64([number])
            facts = Facts(number, number, may_nan=bool(np.isnan(number)) and v is not None,
                          integral=v is not None and float(number).is_integer(), nan_is_null=True)
            return Num(tensor, self.g.true() if v is None else None, kind if kind.kind != "null" else BIGINT, facts)
        raise FusedCompileError(f"{where}: a constant of type {kind} cannot be a tensor here")

    # ---- coercions

    def null_mask(self, v: Value) -> str | None:
        if isinstance(v, Coded):
            return self.gathered(Coded(v.code, tuple(x is None for x in v.table), v.type), np.bool_, False) \
                if any(x is None for x in v.table) else None
        if isinstance(v, Const):
            return self.g.true() if v.value is None else None
        if isinstance(v, Str):
            if v.cleaned and v.nullif_empty:  # NULL or cleaned to ''
                return self.op("LessOrEqual", [self.codes.code(v), self.g.i64(CODE_EMPTY)], "isnull")
            masks = [m for m in (v.raw_null, self.codes.equals(v, "") if v.nullif_empty else None) if m]
            return self.any(masks)
        if isinstance(v, IntText):
            return v.number.null
        if isinstance(v, ListLookup):
            return None
        return v.null

    def unsure_of(self, v: Value) -> str | None:
        if isinstance(v, (Num, Bool, Str)):
            return v.unsure
        if isinstance(v, IntText):
            return v.number.unsure
        if isinstance(v, Coded) and v.errors:
            return self.gathered(Coded(v.code, tuple(i in v.errors for i in range(len(v.table))), v.type),
                                 np.bool_, False)
        return None

    def num(self, v: Value, where: str) -> Num:
        """A number value as a tensor (constants as [1])."""
        if isinstance(v, Num):
            return v
        if isinstance(v, Coded):
            if not all(x is None or x is folding.ERROR or isinstance(x, (bool, int, float)) or hasattr(x, "scaleb")
                       for x in v.table):
                raise FusedCompileError(f"{where}: expected a number, got a string")
            scale = 10.0 ** v.type.scale if v.type.kind == "decimal" else 1.0
            table = tuple(None if x is None or x is folding.ERROR else float(x) * scale for x in v.table)
            tensor = self.gathered(Coded(v.code, table, v.type), np.float64, np.nan)
            present = [x for x in table if x is not None]
            facts = Facts(min(present, default=0.0), max(present, default=0.0),
                          may_nan=any(np.isnan(x) for x in present),
                          integral=all(float(x).is_integer() for x in present),
                          nan_is_null=not any(np.isnan(x) for x in present))
            return Num(tensor, self.null_mask(v), v.type, facts, self.unsure_of(v))
        if isinstance(v, Const) and (v.value is None or type_of(v).numeric or type_of(v).kind == "timestamp"):
            n = self.const_tensor(v, where)
            if isinstance(n, Num):
                return n
        raise FusedCompileError(f"{where}: expected a number, got {type_of(v)}")

    def boolean(self, v: Value, where: str) -> Bool:
        if isinstance(v, Bool):
            return v
        if isinstance(v, Coded) and all(x is None or x is folding.ERROR or isinstance(x, bool) for x in v.table):
            return Bool(self.gathered(v, np.bool_, False), self.null_mask(v), self.unsure_of(v))
        if isinstance(v, Const) and v.value is None:
            return Bool(self.g.false(), self.g.true())
        if isinstance(v, Const) and isinstance(v.value, bool):
            return Bool(self.g.const([v.value], np.bool_), None)
        raise FusedCompileError(f"{where}: expected a boolean, got {type_of(v)}")

    # ---- folding per string code

    def elementwise(self, fn: Callable[..., Value], values: list[Value]) -> Value | None:
        """``fn`` folded code by code when every argument is a constant or Coded on one code; else None."""
        codes = {v.code for v in values if isinstance(v, Coded)}
        if len(codes) != 1 or not all(isinstance(v, (Coded, Const)) for v in values):
            return None
        sizes = {len(v.table) for v in values if isinstance(v, Coded)}
        if len(sizes) > 1 and not self.learning:  # in pass one a field's constants are still being found
            raise AssertionError(f"codes of different sizes for {codes}")
        out, errors, kind = [], set(), None
        for i in range(max(sizes)):
            args = [Const(v.table[i] if i < len(v.table) else None, v.type) if isinstance(v, Coded) else v for v in values]
            if any(isinstance(v, Coded) and i in v.errors for v in values):
                args = [Const(folding.ERROR, a.type) if isinstance(a, Const) and a.value is None else a for a in args]
            try:
                folded = fn(*args)
            except (FusedCompileError, TypeError, ZeroDivisionError, OverflowError, ArithmeticError):
                return None  # not foldable constant by constant: computed on tensors instead
            if not isinstance(folded, Const):
                return None
            kind = kind or folded.type
            if folded.value is folding.ERROR:
                errors.add(i)
                out.append(None)
            else:
                out.append(folded.value)
        return Coded(codes.pop(), tuple(out), kind or values[0].type, frozenset(errors))  # type: ignore[union-attr]

    def coded(self, s: Str) -> Coded:
        """The cleaned text of ``s`` per code: NULL, '' (NULL under NULLIF), other, the constants."""
        from training.fused.types import VARCHAR  # noqa: PLC0415

        universe = self.codes.universe(s)
        return Coded(self.codes.code(s), (None, None if s.nullif_empty else "", OTHER_TEXT, *universe), VARCHAR)

    def gathered(self, v: Coded, dtype: Any, fill: Any) -> str:
        table = [fill if x is None or x is OTHER_TEXT or x is folding.ERROR else x for x in v.table]
        return self.op("Gather", [self.g.const(table, dtype), v.code], "coded")

