"""What the benchmarks share: a warmed-up timing loop and an ONNX Runtime session set up as serving's."""

from __future__ import annotations

import time
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
