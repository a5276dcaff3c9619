"""The registry of SQL constructs the compiler understands: one small emitter per construct.

Each ``Construct`` names the sqlglot node types it compiles, the SQL it stands for (the docs and
the refusal message list these), its emitter, and its entries in the differential fuzzer's
grammar (``tests/unit/fused_grammar.py`` expands them). Adding a construct means one emitter and
its grammar entry, registered here: nothing else in the compiler changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.fused.compiler import Compiler, Eval
    from training.fused.values import Value


@dataclass(frozen=True)
class Construct:
    """One SQL construct: how it is compiled and how the fuzzer writes it."""

    name: str
    """Short name, for the docs."""
    sql: str
    """The SQL it covers, as users write it (``a + b``, ``CAST(x AS DECIMAL(p, s))``)."""
    nodes: tuple[type, ...]
    """sqlglot expression types it compiles."""
    emit: Callable[[Compiler, Any, Eval], Value]
    """Compile one node; ``Eval`` compiles a child expression in the same scope."""
    grammar: tuple[tuple[str, str], ...] = ()
    """Fuzzer templates as (result kind, template); ``{num}``, ``{int}``, ``{bool}``, ``{str}``, ``{ts}``
    stand for generated subexpressions of that kind, ``{lit}`` for a numeric literal and ``{text}``
    for a string literal."""


def _load() -> tuple[Construct, ...]:
    from training.fused.emitters import (arithmetic, casts, comparison, conditional, functions, literals, lists,  # noqa: PLC0415
                                         logic, strings, time, window)

    return (*literals.CONSTRUCTS, *arithmetic.CONSTRUCTS, *functions.CONSTRUCTS, *comparison.CONSTRUCTS,
            *logic.CONSTRUCTS, *conditional.CONSTRUCTS, *casts.CONSTRUCTS, *strings.CONSTRUCTS, *time.CONSTRUCTS,
            *lists.CONSTRUCTS, *window.CONSTRUCTS)


class _Registry(dict):
    """type -> Construct, built on first use (no work at import time)."""

    def __missing__(self, key: type) -> Construct | None:
        if not self:
            for construct in constructs():
                for node in construct.nodes:
                    self[node] = construct
            if key in self:
                return self[key]
        return None

    def get(self, key: type, default: Any = None) -> Construct | None:  # type: ignore[override]
        found = self[key]
        return default if found is None else found


EMITTERS: dict[type, Construct] = _Registry()

_CONSTRUCTS: list[tuple[Construct, ...]] = []


def constructs() -> tuple[Construct, ...]:
    if not _CONSTRUCTS:
        _CONSTRUCTS.append(_load())
    return _CONSTRUCTS[0]


def supported() -> str:
    """The supported SQL, as listed in the refusal message and the docs."""
    return "; ".join(c.sql for c in constructs() if c.sql)


def supported_table() -> str:
    """The supported SQL as a markdown table, for docs/fused.md (a test keeps the two equal):
    ``python -c "from training.fused.emitters import supported_table; print(supported_table())"``."""
    rows = ["| construct | SQL | module |", "|---|---|---|"]
    for c in constructs():
        if c.sql:
            rows.append(f"| {c.name} | {c.sql.replace('|', chr(92) + '|')} | `{c.emit.__module__.rsplit('.', 1)[-1]}` |")
    return "\n".join(rows)
