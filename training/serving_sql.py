"""Refuse serving SQL that cannot run row by row at serving time, when the bundle is built.

A feature that needs other rows (window functions), the clock or randomness (now(), random()),
or a warehouse table that is not frozen into the bundle would train fine and then break or skew
in production. The compiled serving SQL is parsed with sqlglot and every such construct is
reported with the feature it feeds.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp

from training.errors import UnservableFeatureError

# Function names (sqlglot's, upper case) whose value depends on something other than the row.
NONDETERMINISTIC = {
    "NOW", "CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "GET_CURRENT_TIMESTAMP",
    "TRANSACTION_TIMESTAMP", "RAND", "RANDOM", "UUID", "GEN_RANDOM_UUID", "SETSEED", "NEXTVAL", "CURRVAL",
}
FILE_READERS_PREFIX = ("READ_", "PARQUET_", "GLOB", "SNIFF_CSV")


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).upper()


def _feature_of(node: exp.Expression) -> str:
    """The output column a node feeds: the nearest enclosing alias, else its CTE."""
    current: exp.Expression | None = node
    while current is not None:
        if isinstance(current, exp.Alias):
            return current.alias
        if isinstance(current, exp.CTE):
            return f"<cte {current.alias}>"
        current = current.parent
    return "<query>"


def check_serving_sql(sql: str, frozen_relations: Iterable[str], request_relation: str = "request") -> None:
    """Raise ``UnservableFeatureError`` naming each feature and construct that cannot be served."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise UnservableFeatureError(f"serving SQL does not parse: {exc}") from exc
    allowed = {request_relation, *frozen_relations, *(cte.alias for cte in tree.find_all(exp.CTE))}
    problems = []
    for node in tree.walk():
        if isinstance(node, exp.Window):
            problems.append((_feature_of(node), f"window function {node.sql('duckdb')[:80]} (reads other rows)"))
        elif isinstance(node, exp.Func):
            name = _function_name(node)
            if name in NONDETERMINISTIC:
                problems.append((_feature_of(node), f"{name.lower()}() (depends on the clock or randomness)"))
            elif name.startswith(FILE_READERS_PREFIX):
                problems.append((_feature_of(node), f"{name.lower()}() (reads files)"))
        elif isinstance(node, exp.Table) and node.name and node.name not in allowed:
            problems.append((_feature_of(node), f"table {exp.table_name(node)} (not frozen into the bundle)"))
    if problems:
        listed = "; ".join(f"feature {feature!r} uses {construct}" for feature, construct in problems)
        raise UnservableFeatureError(
            f"{len(problems)} construct(s) cannot run at serving: {listed}. Compute such values in the "
            "warehouse as entity state or fitted statistics (models with meta.role fitted_state) instead."
        )
