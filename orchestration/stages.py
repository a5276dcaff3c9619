"""The pipeline's stages, as an explicit registry: name, what it reads, what it writes, function.

    demo_data -> parse -> ingest -> dbt_build -> train -> evaluate -> deploy

Each function takes the run context and returns a small summary dict; values later stages need
are put on ``ctx.state`` under the names the stage declares as outputs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestration import demo_data
from orchestration.config import PipelineConfig
from orchestration.dbt import DbtContext, compile_inline, run_dbt
from orchestration.errors import StageError
from orchestration.ingest import ingest, partition_files
from serving import registry
from serving.bundle import load_bundle
from training import dbt_manifest
from training.bundle import bundle_manifest_fields, write_bundle
from training.data import Dataset, SplitBoundaries, data_fingerprint, read_features, to_dataset
from training.metrics import PRIMARY_METRIC
from training.run import TrainedModel, TrainingOptions, train
from training.tracking import RunRecord
from training.parity import ParityReport, check_parity, held_out_raw_rows
from training.serving_sql import check_serving_sql

PACKAGES = ("dbt-core", "dbt-duckdb", "duckdb", "scikit-learn", "skl2onnx", "onnx", "onnxruntime",
            "numpy", "pyarrow", "pandas")


@dataclass
class RunContext:
    """What one pipeline run shares between stages."""

    cfg: PipelineConfig
    run_id: str
    echo: Callable[[str], None]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def source_table(self) -> str:
        return self.cfg.dbt.source.split(".", 1)[1]

    def dbt(self) -> DbtContext:
        split: SplitBoundaries | None = self.state.get("split")
        return DbtContext(
            project_dir=self.cfg.dbt_project,
            warehouse=self.cfg.warehouse,
            landing=self.cfg.landing,
            target_dir=self.cfg.artifacts / "dbt" / "target",
            log_dir=self.cfg.artifacts / "dbt" / "logs",
            vars={"train_end": split.train_end.isoformat(), "valid_end": split.valid_end.isoformat()} if split else {},
        )


@dataclass(frozen=True)
class Stage:
    """One node of the DAG."""

    name: str
    """Stage name, used on the command line and in messages."""
    description: str
    """One line for `plan` and `--help`."""
    inputs: tuple[str, ...]
    """State keys (or external inputs in angle brackets) the stage reads."""
    outputs: tuple[str, ...]
    """State keys (or external outputs in angle brackets) the stage writes."""
    run: Callable[[RunContext], dict[str, Any]]


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


def _code_version(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def run_record(ctx: RunContext, error: str | None = None) -> RunRecord | None:
    """The tracking record of this run, or None when it failed before a model was trained."""
    trained: TrainedModel | None = ctx.state.get("trained")
    if trained is None:
        return None
    return RunRecord(
        run_id=ctx.run_id,
        status="succeeded" if error is None else f"failed at {ctx.state.get('current_stage')}",
        lineage=_lineage(ctx),
        metrics=trained.metrics,
        search=None if trained.search is None else {"metric": trained.search.metric, "trials": trained.search.trials},
        durations={**ctx.state.get("durations", {}), **{f"train.{k}": v for k, v in trained.durations.items()}},
        task=ctx.cfg.task,
        onnx_sha256=trained.onnx_sha256,
        bundle_id=ctx.state.get("bundle_id"),
        error=error,
    )


def _lineage(ctx: RunContext) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    split: SplitBoundaries = ctx.state["split"]
    trained: TrainedModel | None = ctx.state.get("trained")
    data: Dataset | None = ctx.state.get("data")
    return {
        "task": ctx.cfg.task,
        "data_fingerprint": ctx.state.get("fingerprint"),
        "dbt_manifest_sha256": dbt_manifest.manifest_digest(ctx.state["manifest"]),
        "code_version": _code_version(Path(__file__).resolve().parent.parent),
        "packages": versions,
        "config_sha256": hashlib.sha256(ctx.cfg.source_text.encode()).hexdigest(),
        "model": {"family": ctx.cfg.model.family, "params": trained.params if trained else ctx.cfg.model.params},
        "search": None if not trained or not trained.search else
                  {"metric": trained.search.metric, "trials": trained.search.trials, "stopped_by": trained.search.stopped_by},
        "training_rows_sampled_from": data.sampled_from if data else None,
        "seed": ctx.cfg.seed,
        "split": {"train_end": split.train_end.isoformat(), "valid_end": split.valid_end.isoformat()},
        "feature_meta": ctx.state["spec"].feature_meta,
    }


def _frozen_tables(ctx: RunContext) -> dict[str, Any]:
    import duckdb

    relations = dbt_manifest.fitted_state_relations(ctx.state["manifest"])
    with duckdb.connect(str(ctx.cfg.warehouse), read_only=True) as con:
        # Sorted, so the same warehouse contents always freeze into the same bytes.
        return {name: con.execute(f"select * from {rel} order by all").fetch_arrow_table()
                for name, rel in sorted(relations.items())}


def _snapshot_info(tables: dict[str, Any], snapshots: tuple[dbt_manifest.EntitySnapshot, ...]) -> dict[str, dict[str, Any]]:
    info = {}
    for snap in snapshots:
        state_at = tables[snap.model].column("state_at")
        latest = max((v for v in state_at.to_pylist() if v is not None), default=None)
        info[snap.model] = {"key": snap.key, "state_at": latest.isoformat() if latest else None}
    return info


def _evaluate(ctx: RunContext) -> dict[str, Any]:
    spec, trained = ctx.state["spec"], ctx.state["trained"]
    metrics = trained.metrics

    serving_sql = compile_inline(ctx.dbt(), "{{ " + ctx.cfg.dbt.serving_macro + "() }}")
    tables = _frozen_tables(ctx)
    # Refuse features that cannot run row by row before anything is written.
    check_serving_sql(serving_sql, tables)
    snapshots = dbt_manifest.entity_snapshots(ctx.state["manifest"])
    bundle_id, path = write_bundle(
        registry.bundles_dir(ctx.cfg.registry),
        model_bytes=trained.onnx,
        serving_sql=serving_sql,
        tables=tables,
        manifest=bundle_manifest_fields(
            task=ctx.cfg.task,
            feature_names=spec.features,
            input_schema=ctx.state["input_schema"],
            threshold=trained.threshold,
            classes=trained.classes,
            metrics=metrics,
            lineage=_lineage(ctx),
            entity_snapshots=_snapshot_info(tables, snapshots),
        ),
    )
    ctx.state.update(bundle_id=bundle_id, bundle_path=path, metrics=metrics)
    report = _parity(ctx, path, snapshots)
    ctx.echo(report.describe())
    if not report.passed:
        raise StageError(f"candidate {bundle_id[:12]} is not deployed: {report.describe()}")
    metric = PRIMARY_METRIC[ctx.cfg.task]
    return {"bundle_id": bundle_id[:12], f"test_{metric}": round(metrics["test"][metric], 4), "parity_rows": report.rows}


def _parity(ctx: RunContext, bundle_path: Path, snapshots: tuple[dbt_manifest.EntitySnapshot, ...]) -> ParityReport:
    """Replay held-out (test-day) raw rows through the bundle's serving path; see training.parity."""
    split: SplitBoundaries = ctx.state["split"]
    held_out = [p for p in partition_files(ctx.cfg.landing, ctx.source_table) if p.stem >= split.valid_end.isoformat()]
    raw = held_out_raw_rows(held_out, [f.name for f in ctx.state["input_schema"]], ctx.cfg.parity.rows, ctx.cfg.seed)
    ctx.echo(f"parity check: replaying {raw.num_rows:,} held-out raw rows through the serving path")
    return check_parity(load_bundle(bundle_path), raw, ctx.cfg.warehouse, ctx.state["spec"], snapshots,
                        feature_rtol=ctx.cfg.parity.feature_rtol, score_atol=ctx.cfg.parity.score_atol)


def _deploy(ctx: RunContext) -> dict[str, Any]:
    record = registry.promote(ctx.cfg.registry, ctx.state["bundle_id"], by=f"orchestrate.py run {ctx.run_id}",
                              reason="trained and evaluated by the pipeline")
    return {"champion": record["bundle_id"][:12], "previous": (record["previous_bundle_id"] or "none")[:12]}


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
    Stage("evaluate", "write the model bundle, then the parity check of held-out raw rows",
          ("trained", "manifest", "fingerprint"), ("bundle_id", "<bundle>"), _evaluate),
    Stage("deploy", "make the bundle the registry's champion (atomic pointer swap)",
          ("bundle_id",), ("<registry champion>",), _deploy),
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
