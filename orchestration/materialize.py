"""The materialize stage: landed events into the online store, after every publish.

Independent of retraining: new state never needs a new model. Incremental by landing partition
(the store remembers each partition's checksum, so a corrected or backfilled partition is loaded
again and replaces what it held), idempotent by event key, and keyed like the other stages: its
key holds the partitions' checksums and the store's own record of what it loaded, so a wiped
store is loaded again.
"""

from __future__ import annotations

import uuid
from typing import Any

from orchestration.context import RunContext
from serving.store import open_store
from training import dbt_manifest
from training.online import load_events

META = "materialized"
"""Store metadata: landing file -> checksum of the version loaded."""
IDENTITY = "identity"
"""Store metadata: a random id given when the pipeline first writes the store."""


def store_digest(url: str) -> str:
    """The store's identity (part of the stage's key), given when the pipeline first looks at the
    store: a wiped or replaced store is loaded again, while loading it changes nothing of the key."""
    try:
        store = open_store(url)
    except (OSError, ValueError, ConnectionError) as exc:
        return f"unreachable: {exc}"
    try:
        if store.meta(IDENTITY) is None:
            store.set_meta(IDENTITY, uuid.uuid4().hex)
        return str(store.meta(IDENTITY))
    except ConnectionError as exc:
        return f"unreachable: {exc}"
    finally:
        store.close()


def materialize(ctx: RunContext) -> dict[str, Any]:
    states = dbt_manifest.entity_states(ctx.state["manifest"])
    if not states:
        return {"entities": 0}
    store = open_store(ctx.cfg.online_store_url)
    try:
        loaded: dict[str, str] = dict(store.meta(META) or {})
        partitions = {name: sha for name, sha, _ in ctx.state["raw_partitions"]}
        changed = sorted(name for name, sha in partitions.items() if loaded.get(name) != sha)
        summary: dict[str, Any] = {"store": ctx.cfg.online_store_url, "partitions": len(changed)}
        if changed:
            ctx.echo(f"loading {len(changed)} landed partition(s) into the online store {ctx.cfg.online_store_url}")
        for state in states:
            outcome = load_events(store, ctx.cfg.warehouse, state, where="source_file in (select unnest(?))",
                                  params=[changed], echo=ctx.echo) if changed else None
            summary[state.spec.name] = outcome.recorded if outcome else 0
        store.set_meta(META, {**loaded, **{name: partitions[name] for name in changed}})
        return summary
    finally:
        store.close()
