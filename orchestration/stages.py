"""The pipeline's stages, as an explicit registry: name, what it reads, what it writes, function.

    demo_data -> parse -> ingest -> dbt_build -> train -> evaluate -> gates -> deploy

Each function takes the run context and returns a small summary dict; values later stages need
are put on ``ctx.state`` under the names the stage declares as outputs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import numpy as np

from orchestration import demo_data
from orchestration.config import PipelineConfig
from orchestration.context import RunContext, Stage
from orchestration.dbt import run_dbt
from orchestration.errors import StageError
from orchestration.ingest import ingest, partition_files
from orchestration.release import deploy, evaluate, gates
from training import dbt_manifest
from training.data import SplitBoundaries, data_fingerprint, read_features, to_dataset
from training.run import TrainingOptions, train

def _demo_data(ctx: RunContext) -> dict[str, Any]:
    if partition_files(ctx.cfg.landing, ctx.source_table):
        return {"generated": 0}
    opts = ctx.cfg.demo_data
    if not opts.generate_if_empty:
        return {"generated": 0}  # ingest names the empty folder
    ctx.echo(f"landing folder is empty: generating {opts.rows:,} demo transactions over {opts.days} days (seed {opts.seed})")
    paths = demo_data.generate(ctx.cfg.landing, demo_data.DemoDataOptions(rows=opts.rows, days=opts.days, seed=opts.seed))
    return {"generated": len(paths)}


def _parse(ctx: RunContext) -> dict[str, Any]:
    dbt = ctx.dbt()
    run_dbt(dbt, ["parse"])
    manifest = dbt_manifest.load_manifest(dbt.manifest_path)
    ctx.state["manifest"] = manifest
    ctx.state["spec"] = dbt_manifest.feature_spec(manifest, ctx.cfg.dbt.features_model)
    ctx.state["input_schema"] = dbt_manifest.input_schema(manifest, ctx.cfg.dbt.source)
    return {"features": len(ctx.state["spec"].features)}


def _split_boundaries(days: list[dt.date], cfg: PipelineConfig) -> SplitBoundaries:
    if cfg.split.train_end and cfg.split.valid_end:
        return SplitBoundaries(cfg.split.train_end, cfg.split.valid_end)
    first, n = min(days), (max(days) - min(days)).days + 1
    train_days = int(np.floor(n * cfg.split.train_fraction))
    valid_days = int(np.floor(n * (cfg.split.train_fraction + cfg.split.valid_fraction)))
    if train_days < 1 or valid_days <= train_days or valid_days >= n:
        raise StageError(
            f"{n} day(s) of data cannot be split {cfg.split.train_fraction:.0%}/{cfg.split.valid_fraction:.0%}/rest "
            "into non-empty train, validation and test days; land more days or change `split`"
        )
    return SplitBoundaries(first + dt.timedelta(days=train_days), first + dt.timedelta(days=valid_days))


def _ingest(ctx: RunContext) -> dict[str, Any]:
    fields = dbt_manifest.input_schema(ctx.state["manifest"], ctx.cfg.dbt.source, include_labels=True)
    partitions, new = ingest(
        ctx.cfg.landing, ctx.source_table, {f.name: f.type for f in fields}, ctx.cfg.warehouse, ctx.run_id, ctx.echo,
    )
    ctx.state["split"] = _split_boundaries([p.day for p in partitions], ctx.cfg)
    return {"partitions": len(partitions), "new_partitions": len(new), "landed_rows": sum(p.rows for p in partitions)}


def _dbt_build(ctx: RunContext) -> dict[str, Any]:
    run_dbt(ctx.dbt(), ["build"], echo=lambda line: ctx.echo("dbt " + line.split("  ", 1)[-1].strip()))
    spec = ctx.state["spec"]
    fingerprint = data_fingerprint(ctx.cfg.warehouse, spec)
    ctx.state["fingerprint"] = fingerprint
    return {"feature_rows": fingerprint["rows"]}


def _train(ctx: RunContext) -> dict[str, Any]:
    cfg, spec = ctx.cfg, ctx.state["spec"]
    table, total = read_features(cfg.warehouse, spec, max_rows=cfg.training.max_rows, seed=cfg.seed)
    if table.num_rows < total:
        ctx.echo(f"{total:,} feature rows exceed training.max_rows ({cfg.training.max_rows:,}): "
                 f"training on a seeded sample of {table.num_rows:,}")
    data = to_dataset(table, spec, ctx.state["split"], cfg.task, sampled_from=total if table.num_rows < total else None)
    search = cfg.search
    if search.enabled:
        ctx.echo(f"hyperparameter search: up to {search.max_trials} trials or {search.time_budget_seconds:g}s")
    ctx.echo(f"fitting {cfg.model.family} ({cfg.task}) on {int(data.train.sum()):,} rows x {len(spec.features)} features")
    trained = train(data, TrainingOptions(
        task=cfg.task, family=cfg.model.family, params=cfg.model.params, seed=cfg.seed,
        search_space=search.space if search.enabled else {}, search_max_trials=search.max_trials,
        search_time_budget_seconds=search.time_budget_seconds,
    ))
    ctx.state.update(data=data, trained=trained)
    return {"train_rows": int(data.train.sum()), "onnx_bytes": len(trained.onnx),
            **{f"{k}_s": round(v, 2) for k, v in trained.durations.items()}}


STAGES: tuple[Stage, ...] = (
    Stage("demo_data", "generate seeded demo data if the landing folder is empty",
          ("<config.demo_data>",), ("<landing files>",), _demo_data),
    Stage("parse", "dbt parse: read features, raw input schema and fitted state from the manifest",
          ("<dbt project>",), ("manifest", "spec", "input_schema"), _parse),
    Stage("ingest", "check landing files against the dbt source and log new partitions",
          ("<landing files>", "manifest"), ("<raw.ingestion_log>", "split"), _ingest),
    Stage("dbt_build", "dbt build: staging, fitted statistics, features mart and their tests",
          ("<landing files>", "<dbt project>", "split"), ("<warehouse>", "fingerprint"), _dbt_build),
    Stage("train", "fit (after an optional search) on the training days, export ONNX, check it, measure",
          ("<warehouse>", "spec", "split"), ("trained", "data"), _train),
    Stage("evaluate", "compile the serving SQL, refuse unservable features, write the candidate bundle",
          ("trained", "manifest", "fingerprint"), ("bundle_id", "<candidate bundle>"), evaluate),
    Stage("gates", "parity, export, metrics, slices, size, latency, no regression vs champion: all must pass",
          ("<candidate bundle>", "trained", "data", "<registry champion>"), ("gate_results", "<gate report>"), gates),
    Stage("deploy", "publish the candidate and make it the champion (atomic pointer swap)",
          ("bundle_id", "gate_results"), ("<registry champion>",), deploy),
)


def run_stages(ctx: RunContext, stages: tuple[Stage, ...] = STAGES) -> list[tuple[str, float, dict[str, Any]]]:
    """Run ``stages`` in order; a failure raises ``StageError`` naming the stage and the cause."""
    done = []
    for stage in stages:
        ctx.echo(f"[{stage.name}] {stage.description}")
        started = time.perf_counter()
        ctx.state["current_stage"] = stage.name
        try:
            summary = stage.run(ctx)
        except StageError as exc:
            raise StageError(f"stage {stage.name!r} failed: {exc}") from exc
        except (ValueError, RuntimeError, LookupError, OSError) as exc:
            raise StageError(f"stage {stage.name!r} failed: {exc}") from exc
        seconds = time.perf_counter() - started
        ctx.state.setdefault("durations", {})[stage.name] = seconds
        done.append((stage.name, seconds, summary))
        ctx.echo(f"[{stage.name}] done in {seconds:.1f}s " + json.dumps(summary, default=str))
    return done
