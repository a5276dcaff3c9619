"""Building the ONNX graph: nodes with shared subexpressions, deduplicated constants, and the
pass that drops what no output needs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Graph:
    """Nodes, initializers and inputs of the graph being compiled."""

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
        """One node's output. The same operation on the same tensors is computed once: the SQL
        repeats itself (a null test per use of a column, a row index per looked-up column) and
        every node costs time."""
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

    # Shorthands for the nodes every emitter needs.

    def f64(self, value: float) -> str:
        return self.const(value, np.float64)

    def i64(self, value: int) -> str:
        return self.const(value, np.int64)

    def true(self) -> str:
        return self.const([True], np.bool_)

    def false(self) -> str:
        return self.const([False], np.bool_)

    def not_(self, x: str) -> str:
        return self.op("Not", [x])

    def and_(self, *xs: str | None) -> str | None:
        """AND of the given masks (None = all False is not meant here: None means "no mask", i.e. True)."""
        present = list(dict.fromkeys(x for x in xs if x))
        if not present:
            return None
        out = present[0]
        for x in present[1:]:
            out = self.op("And", [out, x])
        return out

    def or_(self, *xs: str | None) -> str | None:
        """OR of the masks given; None (no mask) is False."""
        present = list(dict.fromkeys(x for x in xs if x))
        if not present:
            return None
        out = present[0]
        for x in present[1:]:
            out = self.op("Or", [out, x])
        return out

    def select(self, condition: str, a: str, b: str, boolean: bool = False) -> str:
        """``condition ? a : b``. ONNX Runtime has no ``Where`` for bool tensors, so booleans are
        selected with And/Or."""
        if boolean:
            return self.op("Or", [self.op("And", [condition, a]), self.op("And", [self.not_(condition), b])])
        return self.op("Where", [condition, a, b])


def node_inputs(node: onnx.NodeProto) -> set[str]:
    """Tensors a node reads, including those its subgraphs (an If's branches) read from outside."""
    names = set(node.input)
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            inner = {name for n in attr.g.node for name in node_inputs(n)}
            produced = {o for n in attr.g.node for o in n.output}
            names |= inner - produced
    return names - {""}


def live(nodes: list[onnx.NodeProto], outputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes the outputs depend on, in order: compiled values the SQL computed but no feature
    uses (a row index whose lookups were all folded, say) would still cost time."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            keep.append(node)
            needed |= node_inputs(node)
    return keep[::-1]
