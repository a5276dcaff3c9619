"""Benchmark the train stage on the default 1M-row demo warehouse: wall time and peak memory.

    python orchestrate.py            # once, to build data/warehouse.duckdb
    python bench/training.py [--config pipeline.yml]

Times each phase of what the `train` stage does (read the features mart as Arrow, build the
float32 matrix, fit, export ONNX and check it on the test split, metrics) plus writing a bundle,
and reports the process's peak resident memory. Run it alone: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestration.config import load_config  # noqa: E402
from serving.bundle import InputField  # noqa: E402
from training import dbt_manifest  # noqa: E402
from training.bundle import bundle_manifest_fields, write_bundle  # noqa: E402
from training.data import SplitBoundaries, read_features, to_dataset  # noqa: E402
from training.run import TrainingOptions, train  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("pipeline.yml"))
    args = parser.parse_args()
    cfg = load_config(args.config)
    manifest_path = cfg.artifacts / "dbt" / "target" / "manifest.json"
    if not cfg.warehouse.exists() or not manifest_path.exists():
        print(f"no warehouse at {cfg.warehouse}; run `python orchestrate.py` first", file=sys.stderr)
        return 1
    manifest = dbt_manifest.load_manifest(manifest_path)
    spec = dbt_manifest.feature_spec(manifest, cfg.dbt.features_model, cfg.label)
    bundle = next(iter(sorted((cfg.registry / "bundles").glob("*/manifest.json"))), None)
    if bundle is None:
        print("no bundle in the registry to read the split from; run `python orchestrate.py` first", file=sys.stderr)
        return 1
    split_json = json.loads(bundle.read_text())["lineage"]["split"]
    split = SplitBoundaries(dt.date.fromisoformat(split_json["train_end"]), dt.date.fromisoformat(split_json["valid_end"]))

    phases: dict[str, float] = {}
    started = time.perf_counter()
    table, total = read_features(cfg.warehouse, spec, max_rows=cfg.training.max_rows, seed=cfg.seed)
    phases["read features mart (Arrow)"] = time.perf_counter() - started
    started = time.perf_counter()
    data = to_dataset(table, spec, split, cfg.task)
    phases["float32 matrix + split"] = time.perf_counter() - started
    del table
    trained = train(data, TrainingOptions(task=cfg.task, family=cfg.model.family, params=cfg.model.params, seed=cfg.seed))
    phases["fit"] = trained.durations["fit"]
    phases["ONNX export + check on test split"] = trained.durations["export"]
    phases["metrics (train/validation/test)"] = trained.durations["evaluate"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp), model_bytes=trained.onnx, serving_sql="select 1", tables={},
                     manifest=bundle_manifest_fields(task=cfg.task, feature_names=spec.features,
                                                     input_schema=(InputField("x", "double", True),),
                                                     threshold=trained.threshold, metrics=trained.metrics))
    phases["write bundle"] = time.perf_counter() - started

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    print(f"rows: {total:,} in the mart, {int(data.train.sum()):,} training rows x {len(spec.features)} features, "
          f"model {cfg.model.family} {cfg.model.params}")
    for name, seconds in phases.items():
        print(f"  {name:<36} {seconds:7.2f} s")
    print(f"  {'train stage total (incl. bundle)':<36} {sum(phases.values()):7.2f} s")
    print(f"peak memory (RSS): {peak_mib:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
