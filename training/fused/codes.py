"""String codes: each cleaned string field (TRIM/LOWER/UPPER of one raw input) becomes one int64
code per row, so comparisons and lookups against constants are integer work.

ONNX Runtime pays per node, and a regex per (field, constant) made string work most of the
graph. A field's code is NULL, EMPTY (cleans to ''), OTHER, or ``CODE_BASE`` + the position of the
constant it cleans to among the constants the SQL compares it with (its "universe"). An exact
LabelEncoder over each constant's usual variants gives most rows their code in one node; only
when some row of some field misses that table (padded more, unseen, other scripts) does one
``If`` run the full-match patterns, which decide those rows exactly as DuckDB would
(``training.fused.text``).

Compilation takes two passes: the first only learns each field's universe, the second emits
every field's code once, first in the graph.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from training.fused import text
from training.fused.graph import Graph
from training.fused.values import Str

CODE_MISS = -1  # not in the exact table: the row needs the pattern fallback
CODE_NULL, CODE_EMPTY, CODE_OTHER, CODE_BASE = 0, 1, 2, 3

CleanKey = tuple[str, bool, "str | None"]
"""(raw field tensor, trim, case): one string code each."""


def key_of(s: Str) -> CleanKey:
    return (s.raw, s.trim, s.case)


class StringCodes:
    """The universes of the cleaned fields and, in the second pass, their code tensors."""

    def __init__(self, g: Graph, universes: dict[CleanKey, tuple[str, ...]] | None,
                 op: Callable[..., str] | None = None, events: set[str] | None = None) -> None:
        self.g = g
        self.op = op or g.op
        """Elementwise nodes (the compiler's, which line up row and event space)."""
        self.events = events if events is not None else set()
        """Tensors in event space ([N, K]): an event field's codes join them."""
        self.learning = universes is None
        self.universes: dict[CleanKey, dict[str, None]] = {k: dict.fromkeys(v) for k, v in (universes or {}).items()}
        self._codes: dict[CleanKey, str] = {}
        self._equals: dict[tuple[CleanKey, str], str] = {}
        self._links: list[tuple[CleanKey, CleanKey]] = []

    def link(self, a: Str, b: Str) -> None:
        """Fields compared with each other (an event's country with the request's): they share
        one universe, so equal cleaned constants get equal codes."""
        self._links.append((key_of(a), key_of(b)))
        self.universes.setdefault(key_of(a), {})
        self.universes.setdefault(key_of(b), {})

    def frozen(self) -> dict[CleanKey, tuple[str, ...]]:
        merged = {k: dict(v) for k, v in self.universes.items()}
        for _ in range(len(self._links)):  # union over chains of links
            for a, b in self._links:
                union = {**merged.get(a, {}), **merged.get(b, {})}
                merged[a], merged[b] = dict(union), dict(union)
        return {k: tuple(v) for k, v in merged.items()}

    def position(self, s: Str, constant: str) -> int | None:
        """Code offset of ``constant`` in ``s``'s universe; None when no raw value can clean to it."""
        if constant == "" or text.cleaned_pattern(s.trim, s.case, constant) is None:
            return None
        universe = self.universes.setdefault(key_of(s), {})
        if constant not in universe:
            if not self.learning:
                raise AssertionError(f"constant {constant!r} for {s.raw} was not seen in the first pass")
            universe[constant] = None
        return list(universe).index(constant)

    def universe(self, s: Str) -> tuple[str, ...]:
        return tuple(self.universes.get(key_of(s), {}))

    def code(self, s: Str) -> str:
        key = key_of(s)
        if self.learning:
            self.universes.setdefault(key, {})
            return f"code_of_{s.raw}"  # pass one discards its graph
        return self._codes[key]

    def emit(self, inputs: dict[str, int]) -> None:
        """Every cleaned field's code, first in the graph (pass two only). ``inputs``: the rank of
        each raw tensor (1 for request fields, 2 for entity events), flattened to join one If."""
        g = self.g
        keys = list(self.universes)
        if not keys:
            return
        exact, fallback = [], []
        flat: dict[str, str] = {}
        for raw, _, _ in keys:
            flat[raw] = raw if inputs.get(raw, 1) == 1 else g.op("Reshape", [raw, g.i64([-1])], "flat")
        for raw, trim, case in keys:
            table = text.code_table(trim, case, list(self.universes[(raw, trim, case)]),
                                    CODE_EMPTY, CODE_OTHER, CODE_NULL, CODE_BASE)
            exact.append(g.op("LabelEncoder", [flat[raw]], "code_exact", domain="ai.onnx.ml", keys_strings=list(table),
                              values_int64s=list(table.values()), default_int64=CODE_MISS))
        joined = exact[0] if len(exact) == 1 else g.op("Concat", exact, "codes_exact", axis=0)
        all_hit = g.op("GreaterOrEqual", [g.op("ReduceMin", [joined], "codes_min", keepdims=0),
                                          g.i64(CODE_MISS + 1)], "codes_all_exact")
        out = g.name("codes")
        hit_out, miss_out = g.name("codes_hit"), g.name("codes_miss")
        then_branch = helper.make_graph([helper.make_node("Identity", [joined], [hit_out])], g.name("all_exact"), [],
                                        [helper.make_tensor_value_info(hit_out, TensorProto.INT64, [None])])
        nodes: list[onnx.NodeProto] = []
        for (raw, trim, case), exact_code in zip(keys, exact):
            fallback.append(self._pattern_codes(Str(flat[raw], None, trim, case), (raw, trim, case), exact_code, nodes))
        nodes.append(helper.make_node("Concat", fallback, [miss_out], axis=0) if len(fallback) > 1
                     else helper.make_node("Identity", fallback, [miss_out]))
        else_branch = helper.make_graph(nodes, g.name("some_missed"), [],
                                        [helper.make_tensor_value_info(miss_out, TensorProto.INT64, [None])])
        # ReduceMin of an empty tensor (no rows) is its identity; the If takes either branch then.
        g.nodes.append(helper.make_node("If", [all_hit], [out], then_branch=then_branch, else_branch=else_branch))
        parts = [out] if len(keys) == 1 else [g.name("code") for _ in keys]
        if len(keys) > 1:
            lengths = g.op("Concat", [g.op("Shape", [flat[raw]], "n") for raw, _, _ in keys], "code_lengths", axis=0)
            g.nodes.append(helper.make_node("Split", [out, lengths], parts, axis=0))
        for key, part in zip(keys, parts):
            raw = key[0]
            if inputs.get(raw, 1) == 1:
                self._codes[key] = part
            else:
                self._codes[key] = g.op("Reshape", [part, g.op("Shape", [raw])], "code")
                self.events.add(self._codes[key])

    def _pattern_codes(self, s: Str, key: CleanKey, exact: str, nodes: list[onnx.NodeProto]) -> str:
        """Nodes (for the If's else branch) giving every row of ``s`` its code: exact hits as they
        are, any other row by one full-match pattern per constant."""
        g = self.g
        code = g.i64([CODE_OTHER])
        tests = [(pattern, CODE_BASE + i) for i, constant in enumerate(self.universes[key])
                 if (pattern := text.cleaned_pattern(s.trim, s.case, constant)) is not None]
        tests.append((text.cleaned_pattern(s.trim, s.case, ""), CODE_EMPTY))
        for pattern, value in tests:
            hit, chained = g.name("match"), g.name("chain")
            nodes.append(helper.make_node("RegexFullMatch", [s.raw], [hit], pattern=pattern))
            nodes.append(helper.make_node("Where", [hit, g.i64(value), code], [chained]))
            code = chained
        is_exact, out = g.name("is_exact"), g.name("code_pattern")
        # NULL ("\0") is always in the exact table, so exact hits cover it.
        nodes.append(helper.make_node("GreaterOrEqual", [exact, g.i64(CODE_MISS + 1)], [is_exact]))
        nodes.append(helper.make_node("Where", [is_exact, exact, code], [out]))
        return out

    def equals(self, s: Str, constant: str) -> str:
        """bool: cleaned(s) == constant, ignoring NULL (callers combine the null mask).

        Memoised: vocabulary lookups and list membership often test the same field against the
        same values, and each test is a node every request pays for."""
        key = (key_of(s), constant)
        if key not in self._equals:
            self._equals[key] = self._equals_node(s, constant)
        return self._equals[key]

    def _equals_node(self, s: Str, constant: str) -> str:
        g = self.g
        if not s.cleaned:
            return self.op("Equal", [s.raw, g.const(constant, object)], "streq")
        if constant == "":
            return self.op("Equal", [self.code(s), g.i64(CODE_EMPTY)], "is_empty")
        position = self.position(s, constant)
        if position is None:
            return g.false()
        return self.op("Equal", [self.code(s), g.i64(CODE_BASE + position)], "streq")

    def lookup(self, s: Str, keys: list[str], offset: int = 0) -> tuple[str, tuple[int, ...]]:
        """int64: the position in ``keys`` of the cleaned ``s``, or -1 (NULL never joins); plus
        ``offset``. Also the mapping code -> position, for folding what is looked up."""
        places = [(self.position(s, k), i) for i, k in enumerate(keys)]
        size = CODE_BASE + len(self.universes.get(key_of(s), {}))
        mapping = np.full(size, -1, dtype=np.int64)
        for place, i in places:
            if place is not None:
                mapping[CODE_BASE + place] = i
        if "" in keys and not s.nullif_empty:
            mapping[CODE_EMPTY] = keys.index("")
        index = self.op("Gather", [self.g.const(mapping + offset, np.int64), self.code(s)], "lookup")
        return index, tuple(int(m) for m in mapping)
