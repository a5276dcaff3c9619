"""From the compiled SQL to one ONNX model: the feature matrix, the unsure mask, and the model
merged behind them. Compilation takes two passes (see ``training.fused.codes``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pyarrow as pa
from onnx import TensorProto, helper
from sqlglot import exp

from serving.bundle import InputField
from serving.fused import FEATURES_OUTPUT, UNSURE_OUTPUT
from serving.store.spec import EntitySpec
from training.errors import FusedCompileError
from training.fused import folding, numeric
from training.fused.compiler import Compiler
from training.fused.graph import live, node_inputs
from training.fused.types import DOUBLE, TIMESTAMP
from training.fused.values import Bool, Const, Num, type_of

OPSET = 20
ML_OPSET = 4


@dataclass(frozen=True)
class FusedModel:
    """A fused ONNX model and what it needs."""

    onnx: bytes
    inputs: tuple[InputField, ...]
    """Raw fields the graph takes, in graph-input order (only those the features use)."""
    event_inputs: tuple[str, ...] = ()
    """Inputs holding each row's entity events, [N, K] (``serving.entity_state.events_input``)."""


def feature_matrix(c: Compiler, names: tuple[str, ...]) -> tuple[str, str]:
    """The final SELECT's columns named ``names`` as the float32 [N, F] matrix (NULL -> NaN), and
    the bool [N] mask of rows the graph is unsure of.

    The columns are concatenated end to end and reshaped, and NULLs are set in one ``Where``:
    a handful of nodes whatever F is, where a Cast and an Unsqueeze per column were 2F.
    """
    final = c.tree
    if not isinstance(final, exp.Select):
        raise FusedCompileError("serving SQL must be a SELECT")
    body = final.copy()
    body.set("with_", None)
    body.set("with", None)
    scope = c.scopes.select(body, "final select")
    g = c.g
    values, nulls, unsure = [], [], []
    for name in names:
        where = f"feature {name!r}"
        value = scope.get(name, "final select")
        if isinstance(value, Const):
            if value.value is folding.ERROR:
                raise FusedCompileError(f"{where}: DuckDB raises an error computing it on every row")
            if value.value is not None and not type_of(value).numeric:
                raise FusedCompileError(f"{where} is a non-numeric constant")
        if isinstance(value, Bool) or type_of(value).kind == "boolean":
            b = c.boolean(value, where)
            v = Num(c.op("Cast", [b.value], "num", to=TensorProto.DOUBLE), b.null, DOUBLE, unsure=b.unsure)
        else:
            v = c.num(value, where)
            if v.type == TIMESTAMP:
                raise FusedCompileError(f"{where} is a timestamp; features are numbers")
            v = numeric.convert(c, v, DOUBLE, where)
        values.append(c.shape_like(v.value))
        nulls.append(None if v.facts.nan_is_null else v.null)
        unsure.append(v.unsure)
    nan = g.f64(np.nan)
    if sum(m is not None for m in nulls) <= 3:  # a Where per column is fewer nodes than building a mask
        values = [v if m is None else c.op("Where", [m, nan, v], "nan") for v, m in zip(values, nulls)]
        nulls = [None] * len(nulls)
    flat = g.op("Concat", values, "columns", axis=0)
    if any(nulls):
        masks = g.op("Concat", [c.shape_like(m or g.false()) for m in nulls], "nulls", axis=0)
        flat = g.op("Where", [masks, nan, flat], "nan")
    by_column = g.op("Reshape", [flat, g.i64([len(names), -1])], "by_column")
    matrix = g.op("Cast", [g.op("Transpose", [by_column], "by_row", perm=[1, 0])], "f32", to=TensorProto.FLOAT)
    return matrix, c.shape_like(c.any(unsure + c.eager_unsure) or g.false())


def compile_fused(sql: str, schema: tuple[InputField, ...], tables: dict[str, pa.Table],
                  feature_names: tuple[str, ...], model_bytes: bytes,
                  entities: dict[str, EntitySpec] | None = None) -> FusedModel:
    """Compile ``sql`` into ONNX operators and merge them in front of ``model_bytes``.
    ``entities``: the entity events relations the SQL reads (relation -> spec)."""
    learner = Compiler(sql, schema, tables, entities=entities)
    feature_matrix(learner, feature_names)
    compiler = Compiler(sql, schema, tables, learner.codes.frozen(), entities=entities)
    # The codes' inputs first: the second pass emits every cleaned field's code up front.
    for raw, _, _ in compiler.codes.universes:
        if raw in compiler.fields:
            compiler.raw(raw)
        elif raw in learner.event_fields:
            compiler.input(raw, learner.event_fields[raw], rank=2)
    compiler.codes.emit(compiler.input_rank)
    matrix, unsure = feature_matrix(compiler, feature_names)
    g = compiler.g
    g.nodes.append(helper.make_node("Identity", [matrix], [FEATURES_OUTPUT]))
    g.nodes.append(helper.make_node("Identity", [unsure], [UNSURE_OUTPUT]))

    model = onnx.load_from_string(model_bytes)
    model_input = model.graph.input[0].name
    prefix = "model_"
    renamed = onnx.compose.add_prefix(model, prefix)
    # Wire the model's (prefixed) input to the features tensor.
    for node in renamed.graph.node:
        node.input[:] = [FEATURES_OUTPUT if i == prefix + model_input else i for i in node.input]
    outputs = [helper.make_tensor_value_info(FEATURES_OUTPUT, TensorProto.FLOAT, [None, len(feature_names)]),
               helper.make_tensor_value_info(UNSURE_OUTPUT, TensorProto.BOOL, [None])]
    outputs.extend(renamed.graph.output)
    nodes = live(g.nodes + list(renamed.graph.node), [o.name for o in outputs])
    used = {name for node in nodes for name in node_inputs(node)}
    inputs = [g.inputs[name] for name in compiler.fields if name in g.inputs and name in used]
    event_inputs = [g.inputs[name] for name in sorted(compiler.event_fields) if name in used]
    graph = helper.make_graph(
        nodes, "fused_features_and_model", inputs + event_inputs, outputs,
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
    return FusedModel(fused.SerializeToString(), tuple(compiler.fields[i.name] for i in inputs),
                      tuple(i.name for i in event_inputs))
