"""Refuse serving SQL that cannot run row by row at serving time, when the bundle is built.

A feature that needs other rows of the request (window functions, except entity state's windows
over an entity's events that see only the past), the clock or randomness (now(), random()),
or a warehouse table that is not frozen into the bundle would train fine and then break or skew
in production. The compiled serving SQL is parsed with sqlglot and every such construct is
reported with the feature it feeds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import sqlglot
from sqlglot import exp

from serving.bundle import InputField
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


def _reads_entity_events(select: exp.Select, ctes: dict[str, exp.Expression], entities: Collection[str]) -> bool:
    """Whether ``select`` reads an entity's events relation, directly or through CTEs that do."""
    from_ = select.args.get("from_") or select.args.get("from")
    table = from_.this if from_ is not None else None
    seen: set[str] = set()
    while isinstance(table, exp.Table) and table.name not in entities and table.name in ctes and table.name not in seen:
        seen.add(table.name)
        inner = ctes[table.name]
        from_ = inner.args.get("from_") or inner.args.get("from") if isinstance(inner, exp.Select) else None
        table = from_.this if from_ is not None else None
    return isinstance(table, exp.Table) and table.name in entities


def _window_problem(node: exp.Window, ctes: dict[str, exp.Expression], entities: Collection[str]) -> str | None:
    """Why a window cannot be served: entity state windows read the entity's events and see only
    the past (frames end at the current row and exclude its peers)."""
    select = node.find_ancestor(exp.Select)
    if select is None or not _reads_entity_events(select, ctes, entities):
        return "reads other rows of the request, not an entity's events"
    spec = node
    if node.args.get("alias") is not None and not node.args.get("spec"):
        named = {w.name: w for w in select.args.get("windows") or []}
        spec = named.get(node.args["alias"].name, node)
    frame = spec.args.get("spec")
    if not spec.args.get("partition_by"):
        return "has no PARTITION BY (an entity's events are partitioned by its key)"
    if frame is None or str(frame.args.get("end", "")).upper() != "CURRENT ROW" or \
            str(frame.args.get("exclude", "")).upper() != "GROUP":
        return "does not end at the current row EXCLUDE GROUP (it would see the event itself or later ones)"
    return None


def check_serving_sql(sql: str, frozen_relations: Iterable[str], entities: Collection[str] = (),
                      request_relation: str = "request") -> None:
    """Raise ``UnservableFeatureError`` naming each feature and construct that cannot be served.
    ``entities``: the entity events relations serving registers (``meta.entity_state``)."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise UnservableFeatureError(f"serving SQL does not parse: {exc}") from exc
    ctes = {cte.alias: cte.this for cte in tree.find_all(exp.CTE)}
    allowed = {request_relation, *frozen_relations, *entities, *ctes}
    problems = []
    for node in tree.walk():
        if isinstance(node, exp.Window):
            if (why := _window_problem(node, ctes, entities)) is not None:
                problems.append((_feature_of(node), f"window function {node.sql('duckdb')[:80]} ({why})"))
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


def referenced_columns(sql: str) -> frozenset[str]:
    """Every column name the SQL refers to anywhere (any relation, any CTE), as written."""
    return frozenset(column.name for tree in sqlglot.parse(sql, read="duckdb") if tree is not None
                     for column in tree.find_all(exp.Column))


def request_schema(sql: str, fields: Sequence[InputField], keep: Collection[str] = ()) -> tuple[InputField, ...]:
    """The source fields a request must carry: those the serving SQL reads, and ``keep`` (the
    entities' keys, event keys, times and event fields, which the online store records, and
    fields declared ``meta: {request: true}``). Landing may carry columns that no model uses."""
    used = referenced_columns(sql) | set(keep)
    return tuple(f for f in fields if f.name in used)
