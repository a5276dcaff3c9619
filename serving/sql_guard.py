"""Check a bundle's SQL as data before DuckDB runs any of it.

A bundle is untrusted input. Its ``serving.sql`` must be exactly one ``SELECT`` that reads only
the request, the bundle's frozen tables and the entity events relations; its relation names must
be plain identifiers. DuckDB parses the text itself (``extract_statements`` and
``json_serialize_sql``), so what is checked is what DuckDB would run: no ``COPY``, ``ATTACH``,
``PRAGMA``, ``SET``, ``UPDATE``, second statement, table function (``read_csv``, ``glob``...),
file path in ``FROM``, other schema or catalog, or time travel. ``ATTACH ':memory:'`` and
``PRAGMA enable_profiling`` cannot be switched off by DuckDB's configuration, so this check is
what keeps them out: the serving connection runs no SQL but the one checked statement.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from typing import Any

import duckdb

from serving.errors import BundleError

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""Relation names a bundle may use: lowercase letters, digits and underscores, at most 63 characters."""
REQUEST_RELATION = "request"


def check_identifier(name: object, where: str, field: str) -> str:
    """``name`` if it matches ``IDENTIFIER``; else a ``BundleError`` naming the file and field."""
    if not isinstance(name, str) or IDENTIFIER.fullmatch(name) is None:
        raise BundleError(
            f"{where}: {field} {str(name)[:80]!r} is not a plain identifier (expected {IDENTIFIER.pattern}); "
            "refusing to load. Rebuild the bundle with `python orchestrate.py`; dbt model names are identifiers"
        )
    return name


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _cte_names(tree: Any) -> set[str]:
    return {str(entry["key"]) for node in _walk(tree) if isinstance(node.get("cte_map"), dict)
            for entry in node["cte_map"].get("map", [])}


def check_feature_sql(sql: str, relations: Collection[str], where: str) -> None:
    """Raise ``BundleError`` unless ``sql`` is one SELECT reading only ``request`` and ``relations``
    (the frozen tables and entity events relations) or its own CTEs."""
    fix = "the serving SQL must be the one SELECT dbt compiled; rebuild the bundle with `python orchestrate.py`"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise BundleError(f"{where}: serving.sql does not parse: {str(exc).splitlines()[0]}; {fix}") from None
    kinds = [str(s.type).rsplit(".", 1)[-1] for s in statements]
    if kinds != ["SELECT"]:
        raise BundleError(f"{where}: serving.sql holds statements {kinds}, expected exactly one SELECT; {fix}")
    with duckdb.connect(":memory:", config={"enable_external_access": False, "lock_configuration": True}) as con:
        serialized = con.execute("select json_serialize_sql(?::varchar)", [sql]).fetchone()
    tree = json.loads(serialized[0]) if serialized else {"error": True, "error_message": "no output"}
    if tree.get("error"):
        raise BundleError(f"{where}: serving.sql is not a plain SELECT: {tree.get('error_message')}; {fix}")
    allowed = {REQUEST_RELATION, *relations, *_cte_names(tree)}
    problems = []
    for node in _walk(tree):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            name = (node.get("function") or {}).get("function_name", "?")
            problems.append(f"table function {name}()")
        elif kind == "BASE_TABLE":
            name = str(node.get("table_name"))
            if node.get("schema_name") or node.get("catalog_name"):
                problems.append(f"relation {node.get('catalog_name')}.{node.get('schema_name')}.{name} (another schema)")
            elif name not in allowed:
                problems.append(f"relation {name!r} (expected one of {sorted(allowed)})")
            if node.get("at_clause"):
                problems.append(f"time travel on {name!r}")
    if problems:
        raise BundleError(f"{where}: serving.sql reads what a bundle may not: {'; '.join(problems)}; {fix}")
