"""Hot reload: serve one predictor, swap in a new champion only once it is loaded and warmed up.

``ModelHolder`` hands out leases on the current predictor. A swap replaces the current one
atomically; requests holding a lease finish on the old predictor, which is closed when its last
lease ends. ``ChampionWatcher`` polls the registry's champion pointer and refuses (keeping the
old model) any bundle that is corrupt, unsafe, fails warm-up or has a different input schema,
because clients were promised the schema in ``/metadata`` and the OpenAPI document.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.bundle import InputField, load_bundle
from serving.errors import BundleError, RegistryError
from serving.metrics import ServerMetrics
from serving.predictor import Predictor
from serving.registry import bundles_dir, read_champion
from serving.store import OnlineStore, StoreUnavailable

log = logging.getLogger("serving.reload")

_SAMPLES = {"string": "warmup", "double": 1.0, "integer": 1, "boolean": False, "timestamp": "2026-01-01T12:00:00"}


def example_record(fields: tuple[InputField, ...]) -> dict[str, Any]:
    """A valid record of the schema, for warm-up."""
    return {f.name: _SAMPLES[f.type] for f in fields}


def warm_up(predictor: Predictor) -> None:
    """Score one record so DuckDB and ONNX Runtime allocate before real traffic (recording nothing
    in the online store); raise BundleError if it fails."""
    try:
        predictor.predict([example_record(predictor.manifest.input_schema)], record=False)
    except StoreUnavailable as exc:  # the model is fine; /ready says the store is not, and /predict answers 503
        log.warning("warm-up could not read entity state, the online store is unavailable: %s", exc)
    except Exception as exc:  # any failure here means the bundle cannot serve
        raise BundleError(f"{predictor.bundle.path}: warm-up prediction failed: {exc}") from exc


def load_warm(path: Path, expected_schema: tuple[InputField, ...] | None = None, feature_path: str = "auto",
              store: OnlineStore | None = None, expected_id: str | None = None) -> Predictor:
    """Load a bundle, check its id against ``expected_id`` (the pointer's: a folder whose manifest
    holds another id is refused), its input schema against ``expected_schema``, and warm it up.
    ``store``: the server's online store, shared by every model it loads (entity state is data,
    not model: a new champion reads the same state)."""
    predictor = Predictor(load_bundle(path), path=feature_path, store=store)
    try:
        if expected_id is not None and predictor.model_id != expected_id:
            raise BundleError(
                f"{path}: manifest bundle_id {predictor.model_id[:12]} differs from the champion pointer's "
                f"{expected_id[:12]}; the folder is misnamed or was copied. Promote the bundle by its real id"
            )
        schema = predictor.manifest.input_schema
        if expected_schema is not None and schema != expected_schema:
            raise BundleError(
                f"{path}: input schema {[(f.name, f.type, f.nullable) for f in schema]} differs from the served "
                f"{[(f.name, f.type, f.nullable) for f in expected_schema]}; a schema change needs a server restart"
            )
        warm_up(predictor)
    except BundleError:
        predictor.close()
        raise
    return predictor


@dataclass
class _Slot:
    predictor: Predictor
    leases: int = 0
    retired: bool = False


class ModelHolder:
    """The predictor being served. Thread-safe."""

    def __init__(self, predictor: Predictor) -> None:
        self._lock = threading.Lock()
        self._slot = _Slot(predictor)

    @property
    def current(self) -> Predictor:
        return self._slot.predictor

    @contextmanager
    def lease(self) -> Iterator[Predictor]:
        """The current predictor, kept open until the block ends even if a swap happens meanwhile."""
        with self._lock:
            slot = self._slot
            slot.leases += 1
        try:
            yield slot.predictor
        finally:
            with self._lock:
                slot.leases -= 1
                done = slot.retired and slot.leases == 0
            if done:
                slot.predictor.close()

    def swap(self, predictor: Predictor) -> Predictor:
        """Serve ``predictor`` from now on; the old one closes when its last lease ends. Returns the old one."""
        with self._lock:
            old, self._slot = self._slot, _Slot(predictor)
            old.retired = True
            done = old.leases == 0
        if done:
            old.predictor.close()
        return old.predictor


class ChampionWatcher:
    """Polls ``<registry>/champion.json`` and swaps in each new champion that loads and warms up."""

    def __init__(self, registry: Path, holder: ModelHolder, metrics: ServerMetrics, interval_s: float,
                 feature_path: str = "auto", store: OnlineStore | None = None) -> None:
        self._registry = registry
        self._feature_path = feature_path
        self._store = store
        self._holder = holder
        self._metrics = metrics
        self._interval_s = interval_s
        self._refused: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> str | None:
        """Look at the pointer once; return "swapped", "refused" or None (nothing new)."""
        try:
            champion = read_champion(self._registry)
        except RegistryError as exc:
            log.warning("hot reload: cannot read the champion pointer, keeping %s: %s", self._holder.current.model_id[:12], exc)
            return None
        bundle_id = str(champion["bundle_id"]) if champion else ""
        current = self._holder.current
        if not bundle_id or bundle_id == current.model_id or bundle_id in self._refused:
            return None
        try:
            fresh = load_warm(bundles_dir(self._registry) / bundle_id, current.manifest.input_schema, self._feature_path,
                              self._store, expected_id=bundle_id)
        except Exception as exc:  # a candidate is untrusted input: whatever breaks, the old model keeps serving
            self._refused.add(bundle_id)
            self._metrics.reload("refused", bundle_id)
            log.error("hot reload: refused champion %s, still serving %s: %s", bundle_id[:12], current.model_id[:12], exc)
            return "refused"
        self._holder.swap(fresh)
        self._metrics.model_loaded(fresh.model_id)
        self._metrics.reload("swapped", bundle_id)
        log.info("hot reload: now serving %s (was %s)", bundle_id[:12], current.model_id[:12])
        return "swapped"

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
