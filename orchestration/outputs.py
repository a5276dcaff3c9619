"""How each stage output is persisted, so a later run can skip the stage that produced it.

Every value a stage puts on ``ctx.state`` (its declared outputs) has a codec here: ``dump`` turns
it into JSON, ``load`` turns that JSON back into the value. Dumped outputs are written to
``<artifacts>/stages/<stage>/<key>.json`` (temporary file, then rename) and their digests go into
the keys of the stages that read them: a stage reruns when what it reads changed, not merely
when an upstream stage reran (an unchanged features table does not retrain).

Values cheaper to rebuild than to store are re-derived on load: the feature spec and input schema
from the manifest, the training matrix from the published features table.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.checks import CheckResult
from training import dbt_manifest
from training.data import SplitBoundaries

MONITORING_TAG = "monitoring"
"""dbt models with this tag are run by the monitoring stage, so they stay out of the training keys."""


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (dt.date, Path)):
        return str(value)
    raise TypeError(f"cannot persist a {type(value).__name__}")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_jsonable, separators=(",", ":"))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ancestors(manifest: dict[str, Any], model: str) -> set[str]:
    """Unique ids of the model ``model`` and every node and source it is built from."""
    (start,) = [uid for uid, n in manifest["nodes"].items() if n.get("resource_type") == "model" and n["name"] == model]
    seen, todo = set(), [start]
    while todo:
        uid = todo.pop()
        if uid not in seen:
            seen.add(uid)
            todo.extend(manifest["parent_map"].get(uid, []))
    return seen


def _used_macros(manifest: dict[str, Any], nodes: dict[str, Any], extra: tuple[str, ...]) -> dict[str, str]:
    """The project macros the nodes call (directly or through other macros), the ones dbt calls
    implicitly (generate_*, materialization_*, adapter dispatch overrides such as
    duckdb__collect_freshness), and ``extra`` by name; uid -> macro SQL."""
    project = manifest["metadata"].get("project_name")
    own = {uid: m for uid, m in manifest["macros"].items() if m.get("package_name") == project}
    todo = [uid for n in nodes.values() for uid in (n.get("depends_on") or {}).get("macros", [])]
    todo += [uid for uid, m in own.items()
             if m["name"].startswith(("generate_", "materialization_")) or "__" in m["name"] or m["name"] in extra]
    used: dict[str, str] = {}
    while todo:
        uid = todo.pop()
        if uid in own and uid not in used:
            used[uid] = own[uid]["macro_sql"]
            todo.extend((own[uid].get("depends_on") or {}).get("macros", []))
    return used


def dbt_logic_digest(manifest: dict[str, Any], *, tag: str | None = None, only: set[str] | None = None,
                     extra_macros: tuple[str, ...] = ()) -> str:
    """sha256 of the project's logic: every node's SQL, config, columns (contracts) and test
    arguments, and the macros they use; nodes tagged ``tag`` only, or (``tag`` None) all but the
    monitoring ones; within ``only`` when given. Stable across re-parses (no timestamps or
    invocation ids), so it changes exactly when that logic does: a macro only the monitoring
    models use does not touch the training build's digest."""
    nodes = {}
    for uid, node in manifest["nodes"].items():
        tagged = MONITORING_TAG in node.get("tags", [])
        if (tag is None and tagged) or (tag is not None and tag not in node.get("tags", [])):
            continue
        if only is not None and uid not in only:
            continue
        nodes[uid] = {k: node.get(k) for k in ("checksum", "config", "depends_on", "test_metadata", "raw_code")}
        # A list, so the digest keeps the columns' order: it is the features' order in the model.
        nodes[uid]["columns"] = list((node.get("columns") or {}).items())
    sources = {uid: {"columns": list((s.get("columns") or {}).items()),
                     **{k: s.get(k) for k in ("config", "freshness", "loaded_at_field")}}
               for uid, s in manifest.get("sources", {}).items() if only is None or uid in only}
    unit_tests = {uid: {k: t.get(k) for k in ("given", "expect", "model")}
                  for uid, t in manifest.get("unit_tests", {}).items() if only is None}
    return sha256(canonical({"nodes": nodes, "macros": _used_macros(manifest, nodes, extra_macros),
                             "sources": sources, "unit_tests": unit_tests}))


@dataclass(frozen=True)
class Codec:
    """How one state value is written and read back."""

    dump: Callable[[Any], Any]
    """Value -> JSON-able. Also what the value's digest is computed from."""
    load: Callable[[Any, Any], Any]
    """(dumped JSON, run context) -> value."""
    digest: Callable[[Any], str] | None = None
    """Digest of the dumped JSON when the default (sha256 of canonical JSON) is too strict."""


def _same(value: Any) -> Any:
    return value


def _as_is() -> Codec:
    return Codec(dump=_same, load=lambda dumped, ctx: dumped)


def _dump_trained(t: Any) -> dict[str, Any]:
    return {
        "onnx": base64.b64encode(t.onnx).decode(), "params": t.params, "threshold": t.threshold,
        "classes": t.classes, "metrics": t.metrics, "export_parity": dataclasses.asdict(t.export_parity),
        "search": None if t.search is None else dataclasses.asdict(t.search), "durations": t.durations,
    }


def _load_trained(d: dict[str, Any], ctx: Any) -> Any:
    # Imported here, like every model-side module: a run that skips training stays fast.
    from training.export import ExportParity  # noqa: PLC0415
    from training.run import TrainedModel  # noqa: PLC0415
    from training.search import SearchResult  # noqa: PLC0415

    # The scikit-learn estimator is not persisted (no pickle anywhere): everything after training
    # scores with the ONNX export, which the export gate proves equal to it.
    return TrainedModel(
        model=None, onnx=base64.b64decode(d["onnx"]), params=d["params"], threshold=d["threshold"],
        classes=d["classes"], metrics=d["metrics"], export_parity=ExportParity(**d["export_parity"]),
        search=None if d["search"] is None else SearchResult(**d["search"]), durations=d["durations"])


def _trained_digest(d: dict[str, Any]) -> str:
    return sha256(canonical({k: v for k, v in d.items() if k != "durations"}))


def _load_data(dumped: Any, ctx: Any) -> Any:
    from training.data import read_features, to_dataset  # noqa: PLC0415 (only when a later stage needs it)

    spec, cfg = ctx.state["spec"], ctx.cfg
    ctx.echo(f"rebuilding the training matrix from {spec.relation} (train was skipped: unchanged)")
    table, total = read_features(cfg.warehouse, spec, max_rows=cfg.training.max_rows, seed=cfg.seed)
    return to_dataset(table, spec, ctx.state["split"], cfg.task,
                      sampled_from=total if table.num_rows < total else None)


def _load_decision(d: dict[str, Any], ctx: Any) -> Any:
    from orchestration.monitoring.policy import Decision  # noqa: PLC0415

    return Decision(fire=d["fire"], reasons=tuple(d["reasons"]))


def _load_gates(d: list[dict[str, Any]], ctx: Any) -> list[Any]:
    from training.gates import GateResult  # noqa: PLC0415

    return [GateResult(**r) for r in d]


CODECS: dict[str, Codec] = {
    "manifest": Codec(dump=_same, load=lambda d, ctx: d, digest=lambda d: dbt_logic_digest(d)),
    "feature_lineage": _as_is(),
    "spec": Codec(dump=dataclasses.asdict,
                  load=lambda d, ctx: dbt_manifest.feature_spec(ctx.state["manifest"], ctx.cfg.dbt.features_model)),
    "input_schema": Codec(dump=lambda v: [dataclasses.asdict(f) for f in v],
                          load=lambda d, ctx: dbt_manifest.input_schema(ctx.state["manifest"], ctx.cfg.dbt.source)),
    "split": Codec(dump=dataclasses.asdict, load=lambda d, ctx: SplitBoundaries(
        dt.date.fromisoformat(d["train_end"]), dt.date.fromisoformat(d["valid_end"]))),
    "raw_partitions": _as_is(),
    "dbt_vars": _as_is(),
    "checks": Codec(dump=lambda v: [dataclasses.asdict(c) for c in v], load=lambda d, ctx: [CheckResult(**c) for c in d]),
    "build_results": _as_is(),
    "build_manifest": Codec(dump=_same, load=lambda d, ctx: d, digest=lambda d: dbt_logic_digest(d)),
    "warnings": _as_is(),
    "fingerprint": _as_is(),
    "trained": Codec(dump=_dump_trained, load=_load_trained, digest=_trained_digest),
    "data": Codec(dump=lambda v: None, load=_load_data),
    "bundle_id": _as_is(),
    "metrics": _as_is(),
    "states": Codec(dump=lambda v: [s.spec.to_json() | {"model": s.model} for s in v],
                    load=lambda d, ctx: dbt_manifest.entity_states(ctx.state["manifest"])),
    "monitoring": _as_is(),
    "retrain_decision": Codec(dump=dataclasses.asdict, load=_load_decision),
    "gate_results": Codec(dump=lambda v: [r.to_json() for r in v], load=_load_gates),
}


def digest(name: str, dumped: Any) -> str:
    codec = CODECS[name]
    return codec.digest(dumped) if codec.digest else sha256(canonical(dumped))


class OutputStore:
    """``<artifacts>/stages/<stage>/<key>.json``: one stage execution's dumped outputs."""

    KEEP = 3
    """Executions kept per stage: enough to go back and forth between recent versions."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def has(self, stage: str, key: str) -> bool:
        return self.path(stage, key).is_file()

    def write(self, stage: str, key: str, dumped: dict[str, Any]) -> None:
        path = self.path(stage, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        # Key order is kept (not canonical): a manifest's column order is the model's feature order.
        try:
            tmp.write_text(json.dumps(dumped, default=_jsonable))
            os.replace(tmp, path)  # a killed run leaves a .tmp- file, never a half-written output
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: what was written of it frees its space again
            raise
        kept = sorted((p for p in path.parent.glob("*.json")), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[self.KEEP:]:
            old.unlink(missing_ok=True)

    def read(self, stage: str, key: str) -> dict[str, Any]:
        return json.loads(self.path(stage, key).read_text())
