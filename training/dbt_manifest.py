"""Read what training needs from dbt's ``manifest.json``: features, raw input schema, fitted state.

Nothing here lists features or fields by hand: the features mart's column ``meta.role`` says which
columns are the key, timestamp, label and features; the dbt source's declared columns and its
``not_null`` tests are the raw input schema; models whose ``meta.role`` is ``fitted_state`` are
the tables frozen into every bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.bundle import InputField
from serving.errors import BundleError
from serving.store.spec import EntitySpec
from training.errors import FeatureSpecError

DBT_TO_INPUT_TYPE = {
    "varchar": "string", "text": "string", "string": "string",
    "double": "double", "float": "double", "real": "double", "decimal": "double", "numeric": "double",
    "integer": "integer", "int": "integer", "bigint": "integer", "smallint": "integer", "tinyint": "integer",
    "boolean": "boolean", "bool": "boolean",
    "timestamp": "timestamp", "datetime": "timestamp",
}


@dataclass(frozen=True)
class FeatureSpec:
    """The features mart as training sees it."""

    model: str
    """dbt model name."""
    relation: str
    """Warehouse relation, ``schema.table``."""
    key: str
    """Column with meta role ``key``."""
    timestamp: str
    """Column with meta role ``timestamp``; the split is by time."""
    label: str
    """Column with meta role ``label``."""
    features: tuple[str, ...]
    """Columns with meta role ``feature``, in the model's input order (the yml's order)."""
    feature_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each feature's column ``meta`` and description, for the bundle and the docs."""


def load_manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FeatureSpecError(f"{path}: dbt manifest not found; run `dbt parse` (the orchestrator does) first")
    return json.loads(path.read_text())


def _model_node(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == name]
    if not nodes:
        raise FeatureSpecError(f"dbt model {name!r} is not in the manifest; check `dbt.features_model` in the pipeline config")
    return nodes[0]


def feature_spec(manifest: dict[str, Any], model: str, label: str | None = None) -> FeatureSpec:
    """The mart's roles; ``label`` picks one of several ``meta.role: label`` columns."""
    node = _model_node(manifest, model)
    by_role: dict[str, list[str]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for name, col in node["columns"].items():
        role = (col.get("meta") or {}).get("role")
        if role is None:
            raise FeatureSpecError(
                f"model {model!r}, column {name!r}: no meta.role; set it to key, timestamp, feature or label in the model's yml"
            )
        by_role.setdefault(role, []).append(name)
        if role == "feature":
            meta[name] = {**col.get("meta", {}), "description": col.get("description", ""), "data_type": col.get("data_type")}
    labels = by_role.get("label", [])
    if label is not None:
        if label not in labels:
            raise FeatureSpecError(f"model {model!r}: config label {label!r} is not one of its label columns {labels}")
        by_role["label"] = [label]
    for role in ("key", "timestamp", "label"):
        if len(by_role.get(role, [])) != 1:
            raise FeatureSpecError(
                f"model {model!r}: expected exactly one column with meta.role {role!r}, found {by_role.get(role, [])}"
            )
    if not by_role.get("feature"):
        raise FeatureSpecError(f"model {model!r}: no column has meta.role 'feature'")
    if not node["config"].get("contract", {}).get("enforced"):
        raise FeatureSpecError(f"model {model!r}: training reads it, so it needs `contract: {{enforced: true}}`")
    return FeatureSpec(
        model=model,
        relation=f"{node['schema']}.{node['alias']}",
        key=by_role["key"][0],
        timestamp=by_role["timestamp"][0],
        label=by_role["label"][0],
        features=tuple(by_role["feature"]),
        feature_meta=meta,
    )


def source_meta(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``meta`` of dbt source table ``source`` (``source_name.table``)."""
    source_name, _, table = source.partition(".")
    for node in manifest["sources"].values():
        if node["source_name"] == source_name and node["name"] == table:
            return dict(node.get("meta") or (node.get("config") or {}).get("meta") or {})
    raise FeatureSpecError(f"dbt source {source!r} is not in the manifest; check `dbt.source` in the pipeline config")


def input_schema(manifest: dict[str, Any], source: str, *, include_labels: bool = False) -> tuple[InputField, ...]:
    """Raw fields of ``source`` (``source_name.table``); labels only when ``include_labels``.

    Without labels this is what a serving request carries; with them, what a landing file holds.
    """
    source_name, _, table = source.partition(".")
    matches = [
        (uid, s) for uid, s in manifest["sources"].items() if s["source_name"] == source_name and s["name"] == table
    ]
    if not matches:
        raise FeatureSpecError(f"dbt source {source!r} is not in the manifest; check `dbt.source` in the pipeline config")
    uid, node = matches[0]
    not_null = {
        t["column_name"]
        for t in manifest["nodes"].values()
        if t["resource_type"] == "test"
        and (t.get("test_metadata") or {}).get("name") == "not_null"
        and uid in t["depends_on"]["nodes"]
    }
    fields = []
    for name, col in node["columns"].items():
        if (col.get("meta") or {}).get("role") == "label" and not include_labels:
            continue
        dbt_type = (col.get("data_type") or "").lower()
        kind = DBT_TO_INPUT_TYPE.get(dbt_type.split("(")[0].strip())
        if kind is None:
            raise FeatureSpecError(
                f"source {source!r}, column {name!r}: data_type {dbt_type!r} has no serving type; "
                f"declare one of {sorted(DBT_TO_INPUT_TYPE)}"
            )
        fields.append(InputField(name=name, type=kind, nullable=name not in not_null))
    if not fields:
        raise FeatureSpecError(f"source {source!r} declares no columns; declare them with data_type in its yml")
    return tuple(fields)


def always_requested(manifest: dict[str, Any], source: str) -> frozenset[str]:
    """Source fields a request carries even when no feature reads them: the landing event key and
    time (they join a served record to what landed) and columns declared ``meta: {request: true}``."""
    source_name, _, table = source.partition(".")
    out: set[str] = set()
    for node in manifest["sources"].values():
        if node["source_name"] == source_name and node["name"] == table:
            landing = (node.get("meta") or {}).get("landing") or {}
            out.update(v for k, v in landing.items() if k in ("event_key", "event_time") and v)
            out.update(name for name, col in node["columns"].items() if (col.get("meta") or {}).get("request") is True)
    return frozenset(out)


def fitted_state_relations(manifest: dict[str, Any]) -> dict[str, str]:
    """Model name -> ``schema.table`` for models with ``meta.role: fitted_state``."""
    return {
        n["name"]: f"{n['schema']}.{n['alias']}"
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and (n["config"].get("meta") or {}).get("role") == "fitted_state"
    }


@dataclass(frozen=True)
class EntityStateModel:
    """A point-in-time state model with ``meta.entity_state``: the entity serving keeps in the
    online store, and where the warehouse holds its events and its state at each event."""

    spec: EntitySpec
    """What the store holds and the bundle declares (serving.store.spec)."""
    model: str
    """The state model (one row per event: the state just before it)."""
    state_relation: str
    """``schema.table`` of the state model."""
    events_relation: str
    """``schema.table`` of ``events_model``: the landed events, raw fields, one row per event."""


def entity_states(manifest: dict[str, Any]) -> tuple[EntityStateModel, ...]:
    """Every model that declares ``meta.entity_state`` (see models/marts/ml/_ml__models.yml)."""
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    found = []
    for name, node in sorted(models.items()):
        meta = (node["config"].get("meta") or {}).get("entity_state")
        if not meta:
            continue
        where = f"model {name!r}, meta.entity_state"
        try:
            spec = EntitySpec.from_json(meta, where)
        except BundleError as exc:
            raise FeatureSpecError(str(exc)) from exc
        events = models.get(meta.get("events_model", ""))
        if events is None:
            raise FeatureSpecError(f"{where}: events_model {meta.get('events_model')!r} is not a model of the project; "
                                   "name the model that holds the landed events' raw fields")
        found.append(EntityStateModel(spec, name, f"{node['schema']}.{node['alias']}",
                                      f"{events['schema']}.{events['alias']}"))
    return tuple(found)
