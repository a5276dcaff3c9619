"""Benchmark the fused model (feature SQL compiled into ONNX) against the model alone.

    python orchestrate.py           # once: a champion with a fused model
    python bench/fused.py [--registry artifacts/registry] [--landing data/landing]

Side by side in one run, on the same rows: the fused graph (raw fields in, scores out) and the
plain model on features already computed by the SQL path. Both are ONNX Runtime sessions with
one thread, so the difference is the cost of computing the features inside the graph.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import entity_inputs, session, timings  # noqa: E402
from serving.bundle import load_bundle  # noqa: E402
from serving.features import FeatureEngine  # noqa: E402
from serving.fused import encode_inputs  # noqa: E402
from serving.registry import resolve_bundle_path  # noqa: E402
from serving.schema import arrow_to_request_table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("artifacts/registry"))
    parser.add_argument("--landing", type=Path, default=Path("data/landing"))
    parser.add_argument("--repeat", type=int, default=3000, help="single-record repetitions (default 3000)")
    args = parser.parse_args()
    bundle = load_bundle(resolve_bundle_path(args.registry))
    if bundle.fused_bytes is None or bundle.manifest.fused is None:
        print(f"the champion has no fused model: {bundle.manifest.fused_refused}", file=sys.stderr)
        return 1
    raw = pq.read_table(sorted((args.landing / "transactions").glob("*.parquet"))[-1])
    raw = raw.select([f.name for f in bundle.manifest.input_schema]).slice(0, 10_000)
    request = arrow_to_request_table(raw, bundle.manifest.input_schema)
    inputs = {f.name: f for f in bundle.manifest.input_schema}
    fused_inputs = [inputs[n] for n in bundle.manifest.fused["inputs"]]
    relations, events = entity_inputs(bundle, request)
    _, one_events = entity_inputs(bundle, request.slice(0, 1))
    feeds = {**encode_inputs(request, fused_inputs), **events}
    engine = FeatureEngine.for_bundle(bundle)
    matrix = engine.feature_matrix(engine.features_table(request, relations))
    fused, model = session(bundle.fused_bytes), session(bundle.model_bytes)
    model_input = model.get_inputs()[0].name
    one_feed = {**encode_inputs(request.slice(0, 1), fused_inputs), **one_events}
    one_row = matrix[:1]
    single_fused = timings(lambda: fused.run(None, one_feed), args.repeat) * 1e6
    single_model = timings(lambda: model.run(None, {model_input: one_row}), args.repeat) * 1e6
    batch_fused = timings(lambda: fused.run(None, feeds), 20)
    batch_model = timings(lambda: model.run(None, {model_input: matrix}), 20)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, onnxruntime {ort.__version__}")
    print(f"model:   {bundle.manifest.bundle_id[:12]}, {len(bundle.manifest.feature_names)} features, "
          f"fused graph {len(bundle.fused_bytes):,} bytes, {len(fused_inputs)} raw inputs")
    print(f"{'measure':<34} {'fused (raw fields)':>22} {'model alone (features)':>24} {'ratio':>7}")
    p50f, p50m = np.percentile(single_fused, 50), np.percentile(single_model, 50)
    print(f"{'single record p50 / p99 (us)':<34} {p50f:>10.1f} / {np.percentile(single_fused, 99):>8.1f} "
          f"{p50m:>12.1f} / {np.percentile(single_model, 99):>8.1f} {p50f / p50m:>7.2f}")
    rows = len(matrix)
    tf, tm = np.median(batch_fused), np.median(batch_model)
    print(f"{f'batch of {rows:,} rows (rows/s)':<34} {rows / tf:>22,.0f} {rows / tm:>24,.0f} {tm / tf:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
