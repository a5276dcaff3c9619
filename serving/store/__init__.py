"""The online store of entity events: embedded (LMDB, the default) or Redis, one interface.

``open_store("embedded:artifacts/online_store")`` or ``open_store("redis://127.0.0.1:6379/0")``.
"""

from __future__ import annotations

from pathlib import Path

from serving.store.base import OnlineStore, RecordOutcome, StoreSchemaError, StoreUnavailable, check_fields
from serving.store.events import Events
from serving.store.spec import EntitySpec, KeepRule

SCHEMES = ("embedded:", "redis://", "rediss://")


def open_store(url: str) -> OnlineStore:
    """The store a URL names; raises ``ValueError`` naming the accepted forms."""
    if url.startswith("embedded:"):
        from serving.store.embedded import EmbeddedStore  # noqa: PLC0415

        return EmbeddedStore(Path(url.removeprefix("embedded:")))
    if url.startswith(("redis://", "rediss://")):
        from serving.store.redis import RedisStore  # noqa: PLC0415

        return RedisStore(url)
    raise ValueError(f"online store {url!r}: expected embedded:<folder> or redis://host:port/db")


__all__ = ["EntitySpec", "Events", "KeepRule", "OnlineStore", "RecordOutcome", "StoreSchemaError", "StoreUnavailable",
           "check_fields", "open_store"]
