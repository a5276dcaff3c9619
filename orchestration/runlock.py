"""One pipeline run at a time per warehouse.

A run holds an exclusive ``flock`` on ``<warehouse>.run.lock`` for its whole length, and writes its
pid, command and start time into the file. The kernel releases the lock when the process dies,
however it dies, so a stale lock never blocks; a second run either exits at once naming the
holder, or (``--wait``) blocks until the holder ends.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class RunLocked(RuntimeError):
    """Another run holds the warehouse's run lock."""


def lock_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".run.lock")


def _holder(fh: IO[str]) -> dict[str, Any]:
    fh.seek(0)
    try:
        return dict(json.loads(fh.read() or "{}"))
    except (json.JSONDecodeError, TypeError, ValueError):
        return {}


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a run that has not written its details yet"
    return f"pid {holder.get('pid')} ({holder.get('command')!r}, started {holder.get('started_at')})"


@contextmanager
def run_lock(warehouse: Path, command: str, *, wait: bool, echo: Any = print) -> Iterator[None]:
    """Hold the warehouse's run lock for the block; raise ``RunLocked`` naming the holder unless ``wait``."""
    path = lock_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe(_holder(fh))
            if not wait:
                raise RunLocked(f"another run holds {path}: {holder}; wait for it with --wait, "
                                "or stop that process") from None
            echo(f"waiting for {path}, held by {holder}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) or command,
                             "run": command, "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
