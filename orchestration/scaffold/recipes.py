"""Default features per column type: an explicit registry, one small recipe per type.

A recipe says how a landing column is cleaned (staging and serving share it), which fitted
statistics it needs over the training window, and which features it yields. Each is a starting
point written into the generated dbt files, where it is edited like any hand-written feature.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from orchestration.scaffold.inference import Column

MAX_CATEGORY_SHARE = 0.5
"""A text column with more distinct values than this share of the sampled rows looks like an id:
no feature is made from it (it is still a request field)."""
MAX_CATEGORIES = 1_000


@dataclass(frozen=True)
class Staged:
    """A landing column as staging names and cleans it."""

    raw: str
    """Its landing name (quoted wherever SQL reads it)."""
    name: str
    """Its staged name: a lower-case SQL identifier."""
    kind: str
    """Serving type."""

    @property
    def quoted(self) -> str:
        return '"' + self.raw.replace('"', '""') + '"'


@dataclass(frozen=True)
class Feature:
    """One column of the features mart."""

    name: str
    sql: str
    """Expression over ``t`` (the staged row), ``s`` (the one-row stats) and ``v_<column>`` (its vocabulary)."""
    data_type: str
    """The mart's contract type: double or integer."""
    description: str


@dataclass(frozen=True)
class Recipe:
    """How one column type becomes features."""

    cleanup: Callable[[Staged], str]
    """The staged expression, from the landing column."""
    stats: Callable[[Staged, str], tuple[tuple[str, str], ...]]
    """(stat name, aggregate over the training window ordered by the key column given) pairs."""
    features: Callable[[Staged], tuple[Feature, ...]]
    vocabulary: bool = False
    """Whether the column gets a fitted vocabulary (``fitted_<table>_vocab``)."""


def _numeric_stats(c: Staged, order: str) -> tuple[tuple[str, str], ...]:
    # Ordered aggregates: a double sum depends on the order of addition; this makes rebuilds bit-identical.
    return ((f"{c.name}_mean", f"avg(cast({c.name} as double) order by {order})"),
            (f"{c.name}_std", f"stddev_pop(cast({c.name} as double) order by {order})"))


def _numeric_features(c: Staged) -> tuple[Feature, ...]:
    return (Feature(c.name, f"cast(t.{c.name} as double)", "double", f"{c.raw} as it landed."),
            Feature(f"{c.name}_z", f"(cast(t.{c.name} as double) - s.{c.name}_mean) / nullif(s.{c.name}_std, 0)",
                    "double", f"{c.raw} standardised by the training window's mean and standard deviation."))


NUMERIC = Recipe(
    cleanup=lambda c: f"cast({c.quoted} as {'double' if c.kind == 'double' else 'bigint'})",
    stats=_numeric_stats,
    features=_numeric_features,
)
FLAG = Recipe(
    cleanup=lambda c: f"cast({c.quoted} as boolean)",
    stats=lambda c, order: (),
    # Unknown counts as false: the fused path feeds booleans without a null (serving/fused.py), so a
    # feature that tells null from false would switch it off (its parity gate finds the difference).
    features=lambda c: (Feature(c.name, f"cast(coalesce(t.{c.name}, false) as integer)", "integer",
                                f"{c.raw}: 1 true, 0 false or unknown."),),
)
CATEGORICAL = Recipe(
    # Case and surrounding spaces rarely carry meaning in exported text; an empty string is a missing value.
    cleanup=lambda c: f"nullif(lower(trim({c.quoted})), '')",
    stats=lambda c, order: (),
    features=lambda c: (Feature(
        f"{c.name}_index", f"case when t.{c.name} is null then -1 else coalesce(v_{c.name}.category_index, 0) end",
        "integer", f"{c.raw}: its frequency rank in the training window; unseen 0, null -1."),),
    vocabulary=True,
)
TIME_PARTS = Recipe(
    cleanup=lambda c: f"cast({c.quoted} as timestamp)",
    stats=lambda c, order: (),
    features=lambda c: (
        Feature(f"{c.name}_hour", f"cast(hour(t.{c.name}) as integer)", "integer", f"Hour of day of {c.raw} (UTC)."),
        Feature(f"{c.name}_day_of_week", f"cast(isodow(t.{c.name}) as integer)", "integer",
                f"ISO day of week of {c.raw}: 1 Monday .. 7 Sunday."),
    ),
)
RECIPES: dict[str, Recipe] = {"double": NUMERIC, "integer": NUMERIC, "boolean": FLAG, "string": CATEGORICAL,
                              "timestamp": TIME_PARTS}
"""Column type -> default recipe. A type missing here has no default feature."""


def makes_features(column: Column, sampled_rows: int) -> bool:
    """False for a text column that looks like an id (almost every value distinct)."""
    if column.kind != "string":
        return True
    return column.distinct <= min(MAX_CATEGORIES, max(20, MAX_CATEGORY_SHARE * sampled_rows))


@functools.cache
def reserved_words() -> frozenset[str]:
    """DuckDB's keywords that are not plain identifiers (read on first use, never at import)."""
    with duckdb.connect() as con:
        return frozenset(r[0] for r in con.execute(
            "select keyword_name from duckdb_keywords() where keyword_category <> 'unreserved'").fetchall())


def identifier(raw: str, taken: set[str]) -> str:
    """A lower-case SQL identifier for a landing name (``Sepal.Length`` -> ``sepal_length``),
    unique among ``taken`` and never a DuckDB keyword, so generated SQL reads it unquoted."""
    name = re.sub(r"[^0-9a-z]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", raw).lower()).strip("_") or "column"
    if name[0].isdigit() or name in reserved_words():
        name = f"c_{name}" if name[0].isdigit() else f"{name}_value"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name
