"""Champion changes: the pipeline's deploy, manual promotion and rollback, all recorded.

The registry's history.jsonl is the record serving sees; the warehouse's ml.promotions mirrors it
for SQL. A crash between the two leaves the registry authoritative.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import duckdb

from orchestration.config import PipelineConfig
from orchestration.faults import pause_point
from serving import registry
from serving.errors import RegistryError
from training.tracking import record_promotion


def resolve_bundle_id(registry_dir: Path, prefix: str) -> tuple[str, Path]:
    """A bundle or candidate whose id starts with ``prefix``; ambiguity and absence are named."""
    matches = [p for folder in (registry.bundles_dir(registry_dir), registry.candidates_dir(registry_dir))
               if folder.is_dir() for p in folder.iterdir() if p.is_dir() and p.name.startswith(prefix)]
    if len(matches) != 1:
        found = "no bundle or candidate" if not matches else f"{len(matches)} bundles ({', '.join(m.name[:12] for m in matches)})"
        raise RegistryError(f"id {prefix!r} matches {found} in {registry_dir}; give more of the id")
    return matches[0].name, matches[0]


def promote(cfg: PipelineConfig, bundle_id: str, *, by: str, reason: str) -> dict[str, Any]:
    if not reason.strip():
        raise RegistryError("a promotion needs a reason; pass --reason '...'")
    record = registry.promote(cfg.registry, bundle_id, by=by, reason=reason,
                              before_replace=lambda: pause_point("promote"))
    if record["changed"] and cfg.warehouse.exists():
        try:
            record_promotion(cfg.warehouse, record)
        except (duckdb.Error, OSError) as exc:  # the pointer has changed: saying otherwise would be false
            print(f"orchestrate: WARNING: {record['bundle_id'][:12]} IS the champion now (see {cfg.registry / registry.HISTORY}), "
                  f"but ml.promotions in {cfg.warehouse} could not record it: {exc}", file=sys.stderr)
    return record


def manual_promote(cfg: PipelineConfig, prefix: str, reason: str) -> dict[str, Any]:
    """Promote any bundle or kept candidate by id prefix: a recorded manual override."""
    bundle_id, path = resolve_bundle_id(cfg.registry, prefix)
    if path.parent == registry.candidates_dir(cfg.registry):
        registry.publish_candidate(cfg.registry, bundle_id)
    return promote(cfg, bundle_id, by=f"{getpass.getuser()} (manual promote)", reason=reason)


def rollback_target(registry_dir: Path) -> str:
    """The last champion that differs from the current one and is still in the registry."""
    current = registry.read_champion(registry_dir)
    if current is None:
        raise RegistryError(f"{registry_dir}: there is no champion, so nothing to roll back")
    for record in reversed(registry.champions(registry_dir)):
        if record["bundle_id"] != current["bundle_id"] and (registry.bundles_dir(registry_dir) / record["bundle_id"]).is_dir():
            return str(record["bundle_id"])
    previous = current.get("previous_bundle_id")
    if previous and previous != current["bundle_id"] and (registry.bundles_dir(registry_dir) / previous).is_dir():
        return str(previous)
    raise RegistryError(f"{registry_dir}: no earlier champion differs from the current {current['bundle_id'][:12]} "
                        f"(see {registry_dir / registry.HISTORY}); promote one by id with `orchestrate.py promote`")


def rollback(cfg: PipelineConfig, reason: str) -> dict[str, Any]:
    """Restore the last champion that differs from the current one."""
    current = registry.read_champion(cfg.registry)
    target = rollback_target(cfg.registry)
    return promote(cfg, target, by=f"{getpass.getuser()} (rollback)",
                   reason=f"rollback from {current['bundle_id'][:12] if current else 'none'}: {reason}")
