"""What the benchmarks share: a warmed-up timing loop and an ONNX Runtime session set up as serving's."""

from __future__ import annotations

import time
from typing import Any
from collections.abc import Callable

import numpy as np
import onnxruntime as ort


def timings(run: Callable[[], object], repeat: int) -> np.ndarray:
    """Seconds taken by each of ``repeat`` calls of ``run``, after up to 50 warm-up calls."""
    for _ in range(min(50, repeat)):
        run()
    out = np.empty(repeat)
    for i in range(repeat):
        started = time.perf_counter()
        run()
        out[i] = time.perf_counter() - started
    return out


def session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU session on ``threads`` intra-op threads and one inter-op thread (serving uses one of each)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def entity_inputs(bundle: Any, request: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The request's entity state as both paths read it (events relations for the SQL path, [N, K]
    feeds for the fused graph), from the online store beside the bundle's registry (read only)."""
    from serving.entity_state import EntityState  # noqa: PLC0415
    from serving.predictor import default_store_url  # noqa: PLC0415
    from serving.request import Request  # noqa: PLC0415
    from serving.store import open_store  # noqa: PLC0415

    if not bundle.manifest.entity_state:
        return {}, {}
    state = EntityState(bundle.manifest.entity_state, bundle.manifest.input_schema,
                        open_store(default_store_url(bundle.path)))
    request = Request.of_table(request)
    gathered = state.gather(request)
    events = tuple((bundle.manifest.fused or {}).get("event_inputs", ()))
    return state.tables(request, gathered), state.feeds(gathered, events)
