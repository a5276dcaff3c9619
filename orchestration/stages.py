"""The pipeline's stages, as an explicit registry: name, what it reads, what it writes, function.

    demo_data -> parse -> ingest -> dbt_build -> dbt_test -> freshness -> validate -> publish -> monitor
        -> retrain_policy -> train -> evaluate -> gates -> deploy

dbt builds into audit schemas; ``validate`` records every check and halts on a failed
error-severity one; only then does ``publish`` copy the audited tables to the schemas training
reads (write-audit-publish, see ``orchestration/publish.py``).

Each function takes the run context and returns a small summary dict; values later stages need
are put on ``ctx.state`` under the names the stage declares as outputs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import duckdb
import numpy as np

from orchestration import checks, demo_data, publish
from orchestration.config import PipelineConfig
from orchestration.context import RunContext, Stage
from orchestration.dbt import run_dbt
from orchestration.errors import DbtError, PublishError, StageError, ValidationError
from orchestration.ingest import ingest, partition_files, raw_relation
from orchestration.monitoring import stages as monitoring_stages
from orchestration.release import deploy, evaluate, gates
from training import dbt_manifest
from training.data import SplitBoundaries, check_feature_availability, read_features, to_dataset
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


def _freshness_as_of(setting: str, days: list[dt.date]) -> str | None:
    """The freshness clock dbt gets (var freshness_as_of); None means the wall clock."""
    if setting == "now":
        return None
    if setting == "latest_partition_end":
        return dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time()).isoformat()
    return setting


def _ingest(ctx: RunContext) -> dict[str, Any]:
    fields = dbt_manifest.input_schema(ctx.state["manifest"], ctx.cfg.dbt.source, include_labels=True)
    result = ingest(
        ctx.cfg.landing, ctx.source_table, {f.name: f.type for f in fields}, ctx.cfg.warehouse, ctx.run_id, ctx.echo,
    )
    for check in result.checks:
        if check.warns:
            ctx.echo(f"WARN {check.label}: {check.message}")
    days = [p.day for p in result.partitions]
    ctx.state["split"] = _split_boundaries(days, ctx.cfg)
    # dbt reads the ingested raw table (not the landing files) and audits into *_audit schemas.
    ctx.state["dbt_vars"] = {
        ctx.cfg.dbt.source.replace(".", "_") + "_relation": f"(select * from {raw_relation(ctx.source_table)})",
        "wap_schema_suffix": publish.AUDIT_SUFFIX,
        **({"freshness_as_of": as_of} if (as_of := _freshness_as_of(ctx.cfg.validation.freshness_as_of, days)) else {}),
    }
    return {"partitions": len(result.partitions), "new_partitions": len(result.loaded) - len(result.replaced),
            "replaced_partitions": len(result.replaced), "landed_rows": sum(p.rows for p in result.partitions)}


def _dbt_step(ctx: RunContext, args: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run dbt; return its results and manifest. Failed tests and broken models are results that
    `validate` records and halts on; a dbt failure that produced no results (a compile error) raises."""
    dbt = ctx.dbt()
    try:
        run_dbt(dbt, args, echo=lambda line: ctx.echo("dbt " + line.split("  ", 1)[-1].strip()))
    except DbtError:
        if not checks.read_json(dbt.target_dir / "run_results.json").get("results"):
            raise
    return checks.read_json(dbt.target_dir / "run_results.json")["results"], checks.read_json(dbt.manifest_path)


def _dbt_build(ctx: RunContext) -> dict[str, Any]:
    baseline = publish.baseline_relation(ctx.state["manifest"])
    baseline_id, baseline_check = publish.champion_baseline(ctx.cfg.warehouse, ctx.cfg.registry, baseline)
    ctx.echo(f"baseline: {baseline_check.message}")
    ctx.state["checks"] = [baseline_check]
    if baseline_id:
        ctx.state["dbt_vars"]["baseline_id"] = baseline_id
    results, manifest = _dbt_step(ctx, ["run", "--exclude", "tag:monitoring"])  # monitoring: `monitor` stage
    ctx.state.update(build_results={"results": results}, build_manifest=manifest)
    failed = [r["unique_id"] for r in results if r["status"] != "success"]
    return {"models": len(results), "failed": len(failed)}


def _dbt_test(ctx: RunContext) -> dict[str, Any]:
    """Every test, after every model: none is skipped because another failed, so one run names every cause."""
    models, manifest = ctx.state["build_results"]["results"], ctx.state["build_manifest"]
    tests: list[dict[str, Any]] = []
    # After a broken model the tests would read stale audit tables; `validate` halts on the model instead.
    if all(r["status"] == "success" for r in models):
        tests, manifest = _dbt_step(ctx, ["test", "--exclude", "tag:monitoring"])
    ctx.state["checks"] += checks.dbt_results({"results": models + tests}, manifest, ctx.cfg.warehouse,
                                              publish.AUDIT_SUFFIX)
    return {"tests": len(tests), "not_passed": sum(r["status"] != "pass" for r in tests)}


def _freshness(ctx: RunContext) -> dict[str, Any]:
    dbt = ctx.dbt()
    try:
        run_dbt(dbt, ["source", "freshness"])
        failure = None
    except DbtError as exc:
        failure = exc  # stale data is a failed check, recorded by `validate`; so is a freshness query that broke
    results = checks.freshness_results(checks.read_json(dbt.target_dir / "sources.json"), ctx.state["build_manifest"])
    if failure and not results:
        results = [checks.CheckResult(origin="dbt_freshness", table=f"source {ctx.cfg.dbt.source}",
                                      check="source_freshness", column=None, metric="age_hours", severity="error",
                                      status="runtime error", passed=False, message=str(failure)[:1000])]
    ctx.state["checks"] += results
    return {r.table: f"{r.status} ({r.actual} h)" for r in results}


def _validate(ctx: RunContext) -> dict[str, Any]:
    results: list[checks.CheckResult] = ctx.state["checks"]
    checks.record_checks(ctx.cfg.warehouse, ctx.run_id, results)
    warnings = [r for r in results if r.warns]
    for r in warnings:
        ctx.echo(f"WARN {r.describe()}")
    ctx.state["warnings"] = [r.describe() for r in warnings]
    halting = [r for r in results if r.halts]
    if halting:
        raise ValidationError(
            f"{len(halting)} error-severity check(s) failed; nothing was published or trained:\n  "
            + "\n  ".join(r.describe() for r in halting),
            checks=tuple(r.label for r in halting),
        )
    if warnings:
        checks.record_alert(ctx.cfg.warehouse, ctx.run_id, stage="validate", severity="warn",
                            checks=[r.label for r in warnings], message="\n".join(ctx.state["warnings"]))
    return checks.summary(results)


def _publish(ctx: RunContext) -> dict[str, Any]:
    spec, split = ctx.state["spec"], ctx.state["split"]
    pairs = publish.audited_relations(ctx.state["build_manifest"], ctx.state["build_results"])
    audited = {published: audit for audit, published in pairs}
    if spec.relation not in audited:
        raise PublishError(f"the features mart {spec.relation} was not built into an audit schema; nothing to publish")
    fingerprint = publish.features_fingerprint(ctx.cfg.warehouse, spec, audited[spec.relation])
    baseline = publish.baseline_relation(ctx.state["manifest"])
    baseline_id = publish.newest_baseline_id(ctx.cfg.warehouse, baseline) if baseline else None
    partitions = publish.publish(ctx.cfg.warehouse, ctx.run_id, pairs, fingerprint=fingerprint,
                                 baseline_id=baseline_id, train_end=split.train_end)
    ctx.state["fingerprint"] = fingerprint
    return {"tables": len(pairs), "feature_rows": fingerprint["rows"], "newly_published_partitions": partitions,
            "baseline_id": (baseline_id or "none")[:12]}


def _train(ctx: RunContext) -> dict[str, Any]:
    cfg, spec = ctx.cfg, ctx.state["spec"]
    fingerprint = publish.assert_published(cfg.warehouse, spec)  # read only what passed validation
    check_feature_availability(spec, dt.date.fromisoformat(fingerprint["first_event"][:10]))
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
    Stage("ingest", "check new landing files against the dbt source; load each into the raw table once",
          ("<landing files>", "manifest"), ("<raw tables>", "<raw.ingestion_log>", "split", "dbt_vars"), _ingest),
    Stage("dbt_build", "dbt run into audit schemas: staging, baseline profile, fitted statistics, features",
          ("<raw tables>", "<dbt project>", "split", "<registry champion>"), ("<audit schemas>", "checks"), _dbt_build),
    Stage("dbt_test", "dbt test: contracts' data tests and distribution checks against the baseline, all of them",
          ("<audit schemas>", "checks"), ("<validation_metrics>", "checks"), _dbt_test),
    Stage("freshness", "dbt source freshness of the ingested landing data",
          ("<raw tables>", "checks"), ("checks",), _freshness),
    Stage("validate", "record every check in validation.check_results; halt on a failed error-severity check",
          ("checks",), ("<validation.check_results>",), _validate),
    Stage("publish", "copy the audited tables to the schemas consumers read (write-audit-publish)",
          ("<audit schemas>", "spec", "split"), ("<published schemas>", "fingerprint"), _publish),
    Stage(name="monitor", description="dbt monitoring models (drift, volume, scores, performance), malformed log lines, replay skew audit",
          inputs=("<published schemas>", "<prediction logs>", "<registry champion>"),
          outputs=("<monitoring schema>", "<validation.alerts>", "replay_audit"), run=monitoring_stages.monitor),
    Stage(name="retrain_policy", description="decide whether train..deploy run (drift, performance, new labels, age, no champion)",
          inputs=("<monitoring schema>", "<registry champion>"), outputs=("retrain_decision", "<monitoring.retrain_decisions>"),
          run=monitoring_stages.retrain_policy),
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
        # --- monitoring (issue 9): until the engine skips on its own, the policy gates train..deploy.
        decision = ctx.state.get("retrain_decision")
        if decision is not None and not decision.fire and stage.name in monitoring_stages.RETRAIN_STAGES:
            ctx.echo(f"[{stage.name}] skipped: " + "; ".join(decision.reasons))
            continue
        # --- end monitoring
        ctx.echo(f"[{stage.name}] {stage.description}")
        started = time.perf_counter()
        ctx.state["current_stage"] = stage.name
        try:
            summary = stage.run(ctx)
        except (ValueError, RuntimeError, LookupError, OSError, duckdb.Error) as exc:
            raise StageError(f"stage {stage.name!r} failed: {exc}", stage=stage.name,
                             checks=getattr(exc, "checks", ())) from exc
        seconds = time.perf_counter() - started
        ctx.state.setdefault("durations", {})[stage.name] = seconds
        done.append((stage.name, seconds, summary))
        ctx.echo(f"[{stage.name}] done in {seconds:.1f}s " + json.dumps(summary, default=str))
    return done
