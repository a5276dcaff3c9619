"""DuckDB's text semantics, read from DuckDB itself: which characters ``trim`` strips and what
``lower``/``upper`` map each character to.

DuckDB's ``trim`` strips the Unicode space separators (U+0020, U+00A0, U+3000...), not tabs or
newlines; its ``lower`` and ``upper`` map one character to one character (``lower('İ')`` is
``i``, ``upper('ſ')`` is ``S``, ``upper('ß')`` is ``ẞ``). Python's ``str.strip``/``str.lower`` and
re2's ``(?i)`` differ from both, so the compiler never uses them to decide a comparison: it asks
DuckDB once per process for the tables below and builds exact patterns from them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from serving.fused import STRING_NULL


@dataclass(frozen=True)
class TextTables:
    """DuckDB's string cleanup, character by character."""

    trim: frozenset[str]
    """Characters ``trim(x)`` strips from both ends."""
    lower: dict[str, str]
    """``lower(c)`` for every character it changes."""
    upper: dict[str, str]
    """``upper(c)`` for every character it changes."""

    def case(self, kind: str | None, text: str) -> str:
        if kind is None:
            return text
        table = self.lower if kind == "lower" else self.upper
        return "".join(table.get(c, c) for c in text)

    def strip(self, text: str) -> str:
        start, end = 0, len(text)
        while start < end and text[start] in self.trim:
            start += 1
        while end > start and text[end - 1] in self.trim:
            end -= 1
        return text[start:end]

    @functools.cached_property
    def _preimages(self) -> dict[str, dict[str, frozenset[str]]]:
        out: dict[str, dict[str, set[str]]] = {"lower": {}, "upper": {}}
        for kind, table in (("lower", self.lower), ("upper", self.upper)):
            for source, target in table.items():
                out[kind].setdefault(target, {target} if table.get(target, target) == target else set()).add(source)
        return {k: {c: frozenset(s) for c, s in v.items()} for k, v in out.items()}

    def preimage(self, kind: str | None, char: str) -> frozenset[str]:
        """Every character that ``kind`` maps to ``char`` (empty when none does)."""
        table = {"lower": self.lower, "upper": self.upper}.get(kind or "", {})
        found = self._preimages.get(kind or "", {}).get(char)
        if found is not None:
            return found
        return frozenset({char}) if table.get(char, char) == char else frozenset()


@functools.cache
def tables() -> TextTables:
    """DuckDB's tables, computed by DuckDB (about half a second, once per process)."""
    import duckdb  # noqa: PLC0415 (training-side only; serving never compiles)

    with duckdb.connect() as con:
        rows = con.execute("""
            with chars as (  -- every code point but the surrogates, which are not characters
                select chr(cast(cp as integer)) as c from range(1, 55296) r(cp)
                union all
                select chr(cast(cp as integer)) from range(57344, 1114112) r(cp)
            )
            select c, lower(c), upper(c), trim(c || 'x' || c) = 'x' from chars
            where lower(c) <> c or upper(c) <> c or trim(c || 'x' || c) = 'x'
        """).fetchall()
    for c, low, up, _ in rows:
        if len(low) != 1 or len(up) != 1:  # the patterns below rely on one character to one
            raise RuntimeError(f"DuckDB maps {c!r} to {low!r}/{up!r}: more than one character")
    return TextTables(
        trim=frozenset(c for c, _, _, t in rows if t),
        lower={c: low for c, low, _, _ in rows if low != c},
        upper={c: up for c, _, up, _ in rows if up != c},
    )


def clean(text: str, trim: bool, case: str | None) -> str:
    """What DuckDB's ``lower/upper(trim(text))`` gives."""
    t = tables()
    return t.case(case, t.strip(text) if trim else text)


def _char(c: str) -> str:
    return f"\\x{{{ord(c):x}}}"


def _class(chars: frozenset[str]) -> str:
    return "[" + "".join(_char(c) for c in sorted(chars)) + "]"


def cleaned_pattern(trim: bool, case: str | None, constant: str) -> str | None:
    """re2 full-match pattern for ``clean(x) == constant``; None when no text cleans to it."""
    t = tables()
    if clean(constant, trim, case) != constant:
        return None  # trim(x) never starts or ends with a space; lower(x) has no capitals...
    body = []
    for c in constant:
        sources = t.preimage(case, c)
        if not sources:
            return None
        body.append(_class(sources) if len(sources) > 1 else _char(c))
    pad = _class(t.trim) + "*" if trim else ""
    return pad + "".join(body) + pad


def code_table(trim: bool, case: str | None, universe: list[str],
               empty: int, other: int, null: int, base: int) -> dict[str, int]:
    """The exact LabelEncoder table of a cleaned field: raw strings whose code is certain.

    Candidates are each constant's usual case variants, bare and (under TRIM) padded with one
    space, plus the empty and space-only strings and the NULL marker; each one's code comes from
    ``clean``, DuckDB's own cleanup, so the table agrees with the patterns by construction."""
    position = {c: base + i for i, c in enumerate(universe)}
    pads = ("", " ") if trim else ("",)
    candidates = {"", " ", "  "} if trim else {""}
    for constant in universe:
        for variant in {constant, constant.lower(), constant.upper(), constant.title(), constant.capitalize()}:
            candidates.update(left + variant + right for left in pads for right in pads)
    table = {}
    for text in sorted(candidates):
        if STRING_NULL in text:
            continue
        cleaned = clean(text, trim, case)
        table[text] = empty if cleaned == "" else position.get(cleaned, other)
    table[STRING_NULL] = null
    return table
