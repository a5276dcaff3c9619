"""Worker processes of one server (``serve-model --workers N``) and the metrics they share.

One Python process uses both cores only while ONNX Runtime runs: parsing, validating and logging
hold the GIL. With N workers, uvicorn's supervisor spawns N processes that accept on the same
socket and replaces one that dies. Each worker loads and warms the model itself after the spawn
(no session crosses a process boundary), watches the champion, and appends to prediction-log
files of its own (their names hold its pid).

Each worker writes its metric counts to a shared folder every ``PUBLISH_INTERVAL_S`` (and when
it stops); the worker answering ``/metrics`` adds the others' to its own, so counters cover the
whole server, at most that interval behind. A worker that exited keeps its last counts there, so
the sums never go down.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from serving.metrics import ServerMetrics

log = logging.getLogger("serving.workers")

PUBLISH_INTERVAL_S = 0.5
_PREFIX = "worker-"


class MetricsExchange:
    """Publishes this process's metric counts to ``directory`` and reads the other workers'."""

    def __init__(self, directory: Path, metrics: ServerMetrics, interval_s: float = PUBLISH_INTERVAL_S) -> None:
        self._directory = directory
        self._metrics = metrics
        self._interval_s = interval_s
        self._own = directory / f"{_PREFIX}{os.getpid()}.json"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-exchange", daemon=True)

    def start(self) -> None:
        self.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.publish()

    def publish(self) -> None:
        """Replace this worker's file with its current counts (a rename: readers never see half)."""
        temporary = self._own.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._metrics.state()))
        os.replace(temporary, self._own)

    def peers(self) -> list[dict[str, Any]]:
        """The other workers' last published counts."""
        states = []
        for path in sorted(self._directory.glob(f"{_PREFIX}*.json")):
            if path == self._own:
                continue
            try:
                states.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # removed while the server stops
                continue
        return states

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.publish()
            except OSError as exc:  # the others' /metrics would go stale; say so and keep trying
                log.error("could not publish this worker's metrics to %s: %s", self._directory, exc)
