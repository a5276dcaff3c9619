"""The differential fuzzer's grammar and inputs: expressions from the compiler's registry
(``training.fused.emitters``, each construct's ``grammar`` templates) and rows full of edges.

Kinds: ``num`` (any number), ``int`` (integers), ``bool``, ``str`` (cleaned text), ``ts``
(timestamps), ``approx`` (transcendental functions, compared within a few ulps).
"""

from __future__ import annotations

import datetime as dt
import re
import string

import numpy as np
from hypothesis import strategies as st

from serving.bundle import InputField
from training import edge_cases
from training.fused.emitters import constructs

SCHEMA = (
    InputField("id", "string", False),
    InputField("d1", "double", True),
    InputField("d2", "double", True),
    InputField("i1", "integer", True),
    InputField("i2", "integer", True),
    InputField("s1", "string", True),
    InputField("s2", "string", True),
    InputField("ts", "timestamp", True),
    InputField("b", "boolean", False),
)
LEAVES = {
    "num": ["t.d1", "t.d2", "t.i1", "s.mean", "s.cents"],
    "int": ["t.i1", "t.i2", "s.count"],
    "bool": ["t.b"],
    "ts": ["t.ts", "s.since"],
    "str": ["t.s1", "t.s2"],
}
LITERALS = ["0", "1", "-1", "2.5", "-2.5", "0.125", "2.675", "100", "1e3", "1e300", "-1e-300", "0.1", "3",
            "2147483647", "9007199254740993", "12.345", "-0.5", "7"]
INT_LITERALS = ["0", "1", "-1", "2", "7", "-7", "100", "2147483647", "-2147483648", "9007199254740992", "86400"]
TEXTS = ["'ios'", "'IOS'", "'it'", "'IT'", "'grocery'", "'straße'", "'STRASSE'", "''", "'a b'", "'ß'", "'k'", "'x'",
         "'ünï'", "'terminal'", "'σας'"]
INT_TEXTS = ["'42'", "'-7'", "'042'", "'0'", "'x'", "''"]


def templates() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {k: [] for k in (*LEAVES, "approx")}
    for construct in constructs():
        for kind, template in construct.grammar:
            out.setdefault(kind, []).append(template)
    return out


_SLOT = re.compile(r"\{(\w+)\}")


@st.composite
def expression(draw: st.DrawFn, kind: str, depth: int = 3) -> str:
    """One expression of ``kind``, nested at most ``depth`` deep."""
    table = templates()
    leaves = LEAVES.get(kind, [])
    if kind == "num":
        leaves = leaves + LEAVES["int"]
    options = table.get(kind, []) + (table["int"] if kind == "num" else [])
    if depth <= 0 or not options or (leaves and draw(st.integers(0, 3)) == 0):
        if kind == "approx":
            kind = "num"
        if kind == "num" and draw(st.booleans()):
            return draw(st.sampled_from(LITERALS))
        return draw(st.sampled_from(leaves or LEAVES["num"]))
    template = draw(st.sampled_from(options))

    def fill(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot == "lit":
            return draw(st.sampled_from(LITERALS))
        if slot == "intlit":
            return draw(st.sampled_from(INT_LITERALS))
        if slot == "places":
            return str(draw(st.integers(-2, 3)))
        if slot == "text":
            return draw(st.sampled_from(TEXTS))
        if slot == "inttext":
            return draw(st.sampled_from(INT_TEXTS))
        if slot == "rawtext":
            return draw(st.sampled_from(LEAVES["str"]))
        # Transcendental results stay at the top: compared within ulps, they must not feed a comparison.
        sub = "num" if slot == "approx" else slot
        return draw(expression(sub, depth - 1))

    return _SLOT.sub(fill, template)


# ---- rows

_SPECIAL_TEXT = edge_cases.TEXT
_SPECIAL_DOUBLES = edge_cases.DOUBLE
_SPECIAL_INTS = edge_cases.INTEGER
_SPECIAL_TIMES = edge_cases.TIMESTAMP


def rows(seed: int, n: int) -> list[dict]:
    """``n`` rows: mostly edge values, some random, about one value in six NULL."""
    rng = np.random.default_rng(seed)

    def pick(special: list, random: object) -> object:
        r = rng.random()
        if r < 0.15:
            return None
        if r < 0.7:
            return special[int(rng.integers(len(special)))]
        return random() if callable(random) else random

    def text() -> str:
        alphabet = string.ascii_letters + " \u00a0\u3000İıſKßẞσΣüÜ\t-0123456789"
        if rng.random() < 0.2:  # any code point but surrogates and NUL
            return "".join(chr(int(c)) for c in rng.integers(1, 0xD7FF, size=int(rng.integers(0, 6))))
        return "".join(alphabet[int(i)] for i in rng.integers(len(alphabet), size=int(rng.integers(0, 8))))

    def moment() -> dt.datetime:
        return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(rng.integers(-62135596800 * 10**6,
                                                                                     253402300799 * 10**6)))

    out = []
    for i in range(n):
        out.append({
            "id": f"r{i}",
            "d1": pick(_SPECIAL_DOUBLES, lambda: float(rng.normal() * 10.0 ** int(rng.integers(-3, 6)))),
            "d2": pick(_SPECIAL_DOUBLES, lambda: float(np.round(rng.normal() * 100, int(rng.integers(0, 4))))),
            "i1": pick(_SPECIAL_INTS, lambda: int(rng.integers(-1000, 1000))),
            "i2": pick(_SPECIAL_INTS, lambda: int(rng.integers(-10**6, 10**6))),
            "s1": pick(_SPECIAL_TEXT, text),
            "s2": pick(_SPECIAL_TEXT, text),
            "ts": pick(_SPECIAL_TIMES, moment),
            "b": bool(rng.random() < 0.5),
        })
    return out
