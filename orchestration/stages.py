"""The pipeline's stages, as an explicit registry: name, what it reads, what it writes, function.

    demo_data -> parse -> ingest -> dbt_build -> dbt_test -> freshness -> validate -> publish -> materialize -> monitor
        -> retrain_policy -> train -> evaluate -> gates -> deploy

dbt builds into audit schemas; ``validate`` records every check and halts on a failed
error-severity one; only then does ``publish`` copy the audited tables to the schemas training
reads (write-audit-publish, see ``orchestration/publish.py``).

Each function takes the run context and returns a small summary dict; values later stages need
are put on ``ctx.state`` under the names the stage declares as outputs, and it reads only the
values it declares as inputs (the engine refuses anything else, since its key would miss them).
How those values are persisted between runs is in ``orchestration/outputs.py``; how keys, skips,
resumes and retries work is in ``orchestration/engine.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import numpy as np

from orchestration import checks, conventions, demo_data, publish, records
from orchestration.config import PipelineConfig
from orchestration.context import RunContext, Stage
from orchestration.monitoring import stages as monitoring_stages
from orchestration.outputs import MONITORING_TAG, ancestors, dbt_logic_digest
from orchestration.dbt import run_dbt
from orchestration.faults import pause_point
from orchestration.errors import DbtError, PublishError, StageError, ValidationError
from orchestration.ingest import ingest, partition_files, source_relation_vars
from orchestration.landing_layout import partition_day
from orchestration.landing_rows import LandingRules
from orchestration.materialize import materialize
from training import dbt_manifest
from training.data import SplitBoundaries, check_feature_availability, read_features, to_dataset


def _landing_has_data(ctx: RunContext) -> str | None:
    if partition_files(ctx.cfg.landing, ctx.source_table):
        return "the landing folder has partitions"
    if not ctx.cfg.demo_data.generate_if_empty:
        return "demo_data.generate_if_empty is off"  # ingest names the empty folder
    return None


def _demo_data(ctx: RunContext) -> dict[str, Any]:
    if _landing_has_data(ctx):  # even when forced: demo data never mixes with delivered data
        return {"generated": 0}
    opts = ctx.cfg.demo_data
    ctx.echo(f"landing folder is empty: generating {opts.rows:,} demo transactions over {opts.days} days (seed {opts.seed})")
    paths = demo_data.generate(ctx.cfg.landing, demo_data.DemoDataOptions(rows=opts.rows, days=opts.days, seed=opts.seed))
    return {"generated": len(paths)}


def _parse(ctx: RunContext) -> dict[str, Any]:
    dbt = ctx.dbt()
    run_dbt(dbt, ["parse"])
    manifest = dbt_manifest.load_manifest(dbt.manifest_path)
    problems = conventions.check(manifest, ctx.cfg.dbt_project, ctx.cfg.dbt.source)
    for problem in problems:
        if not problem.halts:
            ctx.echo(f"WARN {problem.describe()}")
            ctx.warnings.append(problem.describe())
    if halting := [p.describe() for p in problems if p.halts]:
        raise StageError("the dbt project does not follow the pipeline's conventions:\n  " + "\n  ".join(halting))
    ctx.state["manifest"] = manifest
    ctx.state["spec"] = dbt_manifest.feature_spec(manifest, ctx.cfg.dbt.features_model)
    ctx.state["input_schema"] = dbt_manifest.input_schema(manifest, ctx.cfg.dbt.source)
    # What a model bundle depends on: the features mart and everything it is built from. A change
    # elsewhere in the project (a validation model, a test) rebuilds data, not the model.
    ctx.state["feature_lineage"] = dbt_logic_digest(manifest, only=ancestors(manifest, ctx.cfg.dbt.features_model),
                                                    extra_macros=(ctx.cfg.dbt.serving_macro,))
    return {"features": len(ctx.state["spec"].features), "feature_lineage": ctx.state["feature_lineage"][:12]}


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


def _check_backfill_range(ctx: RunContext) -> None:
    """A backfill over days with no landing partition is a mistake worth naming, not a silent no-op."""
    start, end = ctx.backfill
    days = sorted(d.isoformat() for p in partition_files(ctx.cfg.landing, ctx.source_table)
                  if (d := partition_day(p)) is not None)
    if not any(start.isoformat() <= d <= end.isoformat() for d in days):
        raise StageError(f"backfill {start}..{end}: no landing partition in that range "
                         f"({ctx.cfg.landing / ctx.source_table} holds {days[0] if days else 'none'}"
                         f"{f' to {days[-1]}' if days else ''}); pick days that landed")


def _ingest(ctx: RunContext) -> dict[str, Any]:
    if ctx.backfill:
        _check_backfill_range(ctx)
    fields = dbt_manifest.input_schema(ctx.state["manifest"], ctx.cfg.dbt.source, include_labels=True)
    columns = {f.name: f.type for f in fields}
    rules = LandingRules.from_meta(dbt_manifest.source_meta(ctx.state["manifest"], ctx.cfg.dbt.source), columns)
    result = ingest(ctx.cfg.landing, ctx.source_table, columns, ctx.cfg.warehouse, ctx.run_id, ctx.echo,
                    reload=ctx.backfill, rules=rules)
    for check in result.checks:
        if check.warns:
            ctx.echo(f"WARN {check.label}: {check.message}")
    ctx.warnings.extend(records.volume_warnings(ctx.cfg.warehouse, [p.path.name for p in result.loaded]))
    ctx.state["raw_partitions"] = [[p.path.name, p.sha256, p.rows] for p in result.partitions]
    days = [p.day for p in result.partitions]
    ctx.state["split"] = _split_boundaries(days, ctx.cfg)
    # dbt reads the ingested raw table (not the landing files) and audits into *_audit schemas.
    ctx.state["dbt_vars"] = {
        **source_relation_vars(ctx.cfg.dbt.source, ctx.source_table),
        "wap_schema_suffix": publish.AUDIT_SUFFIX,
        # The row-count check's calendar runs to the newest partition: a day whose rows all vanished is a gap.
        "last_partition_day": max(days).isoformat(),
        **({"freshness_as_of": as_of} if (as_of := _freshness_as_of(ctx.cfg.validation.freshness_as_of, days)) else {}),
    }
    return {"partitions": len(result.partitions), "new_partitions": len(result.loaded) - len(result.replaced) - len(result.reloaded),
            "reloaded_partitions": len(result.reloaded),
            "replaced_partitions": len(result.replaced), "landed_rows": sum(p.rows for p in result.partitions)}


def _dbt_step(ctx: RunContext, args: list[str], dbt_vars: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run dbt; return its results and manifest. Failed tests and broken models are results that
    `validate` records and halts on; a dbt failure that produced no results (a compile error) raises."""
    dbt = ctx.dbt(ctx.state["split"], dbt_vars)
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
    dbt_vars = {**ctx.state["dbt_vars"], **({"baseline_id": baseline_id} if baseline_id else {})}
    results, manifest = _dbt_step(ctx, ["run", "--exclude", f"tag:{MONITORING_TAG}"], dbt_vars)
    ctx.state.update(build_results={"results": results, "dbt_vars": dbt_vars}, build_manifest=manifest)
    failed = [r["unique_id"] for r in results if r["status"] != "success"]
    return {"models": len(results), "failed": len(failed)}


def _dbt_test(ctx: RunContext) -> dict[str, Any]:
    """Every test, after every model: none is skipped because another failed, so one run names every cause."""
    models, manifest = ctx.state["build_results"]["results"], ctx.state["build_manifest"]
    tests: list[dict[str, Any]] = []
    # After a broken model the tests would read stale audit tables; `validate` halts on the model instead.
    if all(r["status"] == "success" for r in models):
        tests, manifest = _dbt_step(ctx, ["test", "--exclude", f"tag:{MONITORING_TAG}"],
                                    ctx.state["build_results"]["dbt_vars"])
    ctx.state["checks"] += checks.dbt_results({"results": models + tests}, manifest, ctx.cfg.warehouse,
                                              publish.AUDIT_SUFFIX)
    return {"tests": len(tests), "not_passed": sum(r["status"] != "pass" for r in tests)}


def _freshness(ctx: RunContext) -> dict[str, Any]:
    dbt = ctx.dbt(ctx.state["split"], ctx.state["dbt_vars"])
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
    # Model-side modules (scikit-learn, skl2onnx, onnxruntime) are imported by the stages that use
    # them, so a run whose model stages are all skipped starts in a fraction of a second.
    from training.run import TrainingOptions, train  # noqa: PLC0415

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
    pause_point("train")
    return {"train_rows": int(data.train.sum()), "onnx_bytes": len(trained.onnx),
            **{f"{k}_s": round(v, 2) for k, v in trained.durations.items()}}


def _evaluate(ctx: RunContext) -> dict[str, Any]:
    from orchestration.release import evaluate  # noqa: PLC0415 (see _train)

    return evaluate(ctx)


def _gates(ctx: RunContext) -> dict[str, Any]:
    from orchestration.release import gates  # noqa: PLC0415 (see _train)

    return gates(ctx)


def _deploy(ctx: RunContext) -> dict[str, Any]:
    from orchestration.release import deploy  # noqa: PLC0415 (see _train)

    return deploy(ctx)


# Config sections whose values end up in a model bundle (its lineage records the config).
_MODEL_CONFIG = ("task", "label", "seed", "model", "search", "training")

STAGES: tuple[Stage, ...] = (
    Stage("demo_data", "generate seeded demo data if the landing folder is empty", (), (), _demo_data,
          config=("demo_data",), effects=("landing files",), when=_landing_has_data),
    Stage("parse", "dbt parse: read features, raw input schema and fitted state from the manifest",
          (), ("manifest", "spec", "input_schema", "feature_lineage"), _parse, sources=("dbt_project",), config=("dbt",)),
    Stage("ingest", "check new landing files against the dbt source; load each into the raw table once",
          ("manifest",), ("raw_partitions", "split", "dbt_vars"), _ingest,
          sources=("landing",), config=("dbt", "split", "validation"), effects=("raw tables", "raw.ingestion_log")),
    Stage("dbt_build", "dbt run into audit schemas: staging, baseline profile, fitted statistics, features",
          ("manifest", "raw_partitions", "split", "dbt_vars"), ("checks", "build_results", "build_manifest"),
          _dbt_build, effects=("audit schemas",)),
    Stage("dbt_test", "dbt test: contracts' data tests and distribution checks against the baseline, all of them",
          ("split", "checks", "build_results", "build_manifest"), ("checks",), _dbt_test,
          effects=("audit schemas' validation_metrics",)),
    Stage("freshness", "dbt source freshness of the ingested landing data",
          ("split", "dbt_vars", "checks", "build_manifest"), ("checks",), _freshness),
    Stage("validate", "record every check in validation.check_results; halt on a failed error-severity check",
          ("checks",), ("warnings",), _validate, effects=("validation.check_results", "validation.alerts")),
    Stage("publish", "copy the audited tables to the schemas consumers read (write-audit-publish)",
          ("manifest", "spec", "split", "build_results", "build_manifest"), ("fingerprint",), _publish,
          effects=("published schemas", "validation.publications")),
    Stage("materialize", "load landed events into the online store (entity state for serving), partition by partition",
          ("raw_partitions", "fingerprint"), (), materialize, covered=("manifest",),
          sources=("online_store",), config=("online_store",), effects=("online store",)),
    Stage("monitor", "dbt monitoring models (drift, volume, scores, performance), malformed log lines, replay audit",
          ("split", "fingerprint"), ("monitoring",), monitoring_stages.monitor, covered=("manifest", "spec"),
          sources=("dbt_monitoring", "prediction_logs"), config=("monitoring",),
          effects=("monitoring schema", "validation.alerts")),
    Stage("retrain_policy", "decide whether train..deploy run: drift, performance, new labels, model age, no champion",
          ("monitoring", "fingerprint"), ("retrain_decision",), monitoring_stages.retrain_policy,
          covered=("spec",), sources=("champion", "today"), config=("monitoring",),
          effects=("monitoring.retrain_decisions",)),
    Stage("train", "fit (after an optional search) on the training days, export ONNX, check it, measure",
          ("spec", "split", "fingerprint"), ("trained", "data"), _train, config=_MODEL_CONFIG,
          when=monitoring_stages.policy_holds),
    Stage("evaluate", "compile the serving SQL, refuse unservable features, write the candidate bundle",
          ("trained", "data", "feature_lineage", "spec", "input_schema", "fingerprint", "split", "dbt_vars"),
          ("bundle_id", "metrics", "states"), _evaluate, covered=("manifest",),
          config=("dbt", "parity", "split", *_MODEL_CONFIG), effects=("registry candidates",),
          when=monitoring_stages.policy_holds),
    Stage("gates", "parity, export, metrics, slices, size, latency, no regression vs champion: all must pass",
          ("trained", "data", "spec", "split", "input_schema", "bundle_id", "states"),
          ("gate_results",), _gates, config=("gates", "parity", "seed", "task"),
          effects=("gate report", "ml.gate_results"), when=monitoring_stages.policy_holds),
    Stage("deploy", "publish the candidate and make it the champion (atomic pointer swap)",
          ("bundle_id", "gate_results"), (), _deploy, effects=("registry champion", "ml.promotions"),
          when=monitoring_stages.policy_holds),
)
