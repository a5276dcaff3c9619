"""The model registry: immutable bundles and an atomically replaced champion pointer.

Layout::

    <registry>/bundles/<bundle_id>/   immutable bundles that passed their gates
    <registry>/candidates/<id>/       candidates being gated, and those that failed (kept for inspection)
    <registry>/champion.json          {"bundle_id": ..., "promoted_at": ..., "by": ..., "reason": ...}
    <registry>/history.jsonl          one line per promotion, appended

The pointer is written to a temporary file, fsynced and renamed over the old one, so a reader
sees either the old champion or the new one, never a half-written file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving.bundle import MANIFEST
from serving.errors import RegistryError

POINTER = "champion.json"
HISTORY = "history.jsonl"
BUNDLES = "bundles"
CANDIDATES = "candidates"


def bundles_dir(registry: Path) -> Path:
    return registry / BUNDLES


def candidates_dir(registry: Path) -> Path:
    return registry / CANDIDATES


def find_bundle(registry: Path, bundle_id: str) -> Path:
    """Where bundle ``bundle_id`` is now: still a candidate, or already published."""
    for folder in (candidates_dir(registry), bundles_dir(registry)):
        if (folder / bundle_id).is_dir():
            return folder / bundle_id
    raise RegistryError(f"bundle {bundle_id[:12]} is in neither {candidates_dir(registry)} nor {bundles_dir(registry)}; "
                        "rerun from the stage that writes it: `python orchestrate.py --from evaluate`")


def publish_candidate(registry: Path, bundle_id: str) -> Path:
    """Move a gated candidate into ``bundles/`` (one atomic rename) and return its path there."""
    final = bundles_dir(registry) / bundle_id
    candidate = candidates_dir(registry) / bundle_id
    if final.is_dir():
        if candidate.is_dir():
            shutil.rmtree(candidate)  # same contents already published
        return final
    if not candidate.is_dir():
        raise RegistryError(f"no candidate {bundle_id[:12]} in {candidates_dir(registry)}")
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(candidate, final)
    fsync_dir(final.parent)
    return final


def read_history(registry: Path) -> list[dict[str, Any]]:
    """Every promotion, oldest first."""
    path = registry / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_champion(registry: Path) -> dict[str, Any] | None:
    """The champion pointer, or None when nothing has been promoted yet."""
    pointer = registry / POINTER
    if not pointer.exists():
        return None
    try:
        return json.loads(pointer.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{pointer}: unreadable champion pointer: {exc}") from exc


def resolve_bundle_path(source: Path) -> Path:
    """A bundle directory as given, or the champion bundle when ``source`` is a registry."""
    if (source / MANIFEST).is_file():
        return source
    if (source / POINTER).exists() or (source / BUNDLES).is_dir():
        champion = read_champion(source)
        if champion is None:
            raise RegistryError(f"{source}: registry has no champion yet; run `python orchestrate.py` to train and deploy one")
        path = bundles_dir(source) / champion["bundle_id"]
        if not path.is_dir():
            raise RegistryError(f"{source}: champion {champion['bundle_id'][:12]} is not in {bundles_dir(source)}")
        try:
            held = json.loads((path / MANIFEST).read_text()).get("bundle_id")
        except (OSError, json.JSONDecodeError, AttributeError):
            held = None  # load_bundle names what is wrong with the manifest
        if held is not None and held != champion["bundle_id"]:
            raise RegistryError(f"{path / MANIFEST}: bundle_id {str(held)[:12]} differs from the champion pointer's "
                                f"{champion['bundle_id'][:12]}; the folder is misnamed or was copied. Promote the bundle by its real id")
        return path
    raise RegistryError(f"{source}: neither a model bundle (no {MANIFEST}) nor a registry (no {POINTER})")


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a file created or renamed in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_history(registry: Path, record: dict[str, Any]) -> None:
    with open(registry / HISTORY, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def champions(registry: Path) -> list[dict[str, Any]]:
    """The promotions that took effect, oldest first. A history line is written ahead of the
    pointer swap, so a line is a champion only if the next promotion saw it in the pointer (its
    ``previous_bundle_id``), or it is the last line and the pointer holds it now."""
    history = read_history(registry)
    current = read_champion(registry)
    applied = []
    for i, record in enumerate(history):
        following = history[i + 1] if i + 1 < len(history) else None
        if following is not None and following.get("previous_bundle_id") == record["bundle_id"]:
            applied.append(record)
        elif following is None and current is not None and current["bundle_id"] == record["bundle_id"]:
            applied.append(record)
    return applied


def promote(registry: Path, bundle_id: str, *, by: str, reason: str,
            before_replace: Callable[[], None] | None = None) -> dict[str, Any]:
    """Make ``bundle_id`` the champion and record it; return the record (``changed`` False when
    it already was the champion: nothing is written).

    Write-ahead: the history line is appended and synced first, then the pointer is written to a
    temporary file, synced and renamed over the old one. An error before the rename leaves the
    old champion in place and says so; a crash between the two leaves a history line that
    ``champions`` does not count. ``before_replace`` runs just before the rename (tests kill the
    process there).
    """
    if not (bundles_dir(registry) / bundle_id / MANIFEST).is_file():
        raise RegistryError(f"cannot promote {bundle_id[:12]}: no such bundle in {bundles_dir(registry)}")
    previous = read_champion(registry)
    if previous is not None and previous["bundle_id"] == bundle_id:
        return {**previous, "changed": False}
    record = {
        "bundle_id": bundle_id,
        "previous_bundle_id": previous["bundle_id"] if previous else None,
        "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "by": by,
        "reason": reason,
    }
    unchanged = f"the champion is unchanged ({previous['bundle_id'][:12] if previous else 'none'})"
    try:
        _append_history(registry, record)
    except OSError as exc:
        raise RegistryError(f"{registry / HISTORY}: cannot record the promotion of {bundle_id[:12]} ({exc}); "
                            f"{unchanged}. Make the file writable and promote again") from exc
    try:
        for stale in registry.glob(f".{POINTER}.*.tmp"):  # left by a writer killed mid-promotion
            stale.unlink(missing_ok=True)
        tmp = registry / f".{POINTER}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(record, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, registry / POINTER)
    except OSError as exc:
        raise RegistryError(f"{registry / POINTER}: cannot swap the champion pointer to {bundle_id[:12]} ({exc}); "
                            f"{unchanged}, and its history line does not count as a promotion. "
                            "Fix the registry folder's permissions or space and promote again") from exc
    fsync_dir(registry)
    return {**record, "changed": True}
