"""The pipeline's stages, as an explicit registry: name, what it reads, what it writes, function.

    demo_data -> parse -> ingest -> dbt_build -> dbt_test -> freshness -> validate -> publish -> train
        -> evaluate -> deploy

dbt builds into audit schemas; ``validate`` records every check and halts on a failed
error-severity one; only then does ``publish`` copy the audited tables to the schemas training
reads (write-audit-publish, see ``orchestration/publish.py``).

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

import duckdb
import numpy as np

from orchestration import checks, demo_data, publish
from orchestration.config import PipelineConfig
from orchestration.dbt import DbtContext, compile_inline, run_dbt
from orchestration.errors import DbtError, PublishError, StageError, ValidationError
from orchestration.ingest import ingest, partition_files, raw_relation
from serving import registry
from serving.bundle import load_bundle
from serving.predictor import Predictor
from training import dbt_manifest
from training.bundle import bundle_manifest_fields, write_bundle
from training.data import SplitBoundaries, check_feature_availability, read_features, to_dataset
from training.export import check_export_parity, export_onnx
from training.metrics import binary_metrics, choose_threshold
from training.model import build_model, fit, predict_scores

PACKAGES = ("dbt-core", "dbt-duckdb", "duckdb", "scikit-learn", "skl2onnx", "onnx", "onnxruntime",
            "numpy", "pyarrow", "pandas")
PARITY_ROWS = 2000
FEATURE_RTOL = 1e-9


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
            vars={**({"train_end": split.train_end.isoformat(), "valid_end": split.valid_end.isoformat()} if split else {}),
                  **self.state.get("dbt_vars", {})},
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
    results, manifest = _dbt_step(ctx, ["run"])
    ctx.state.update(build_results={"results": results}, build_manifest=manifest)
    failed = [r["unique_id"] for r in results if r["status"] != "success"]
    return {"models": len(results), "failed": len(failed)}


def _dbt_test(ctx: RunContext) -> dict[str, Any]:
    """Every test, after every model: none is skipped because another failed, so one run names every cause."""
    models, manifest = ctx.state["build_results"]["results"], ctx.state["build_manifest"]
    tests: list[dict[str, Any]] = []
    # After a broken model the tests would read stale audit tables; `validate` halts on the model instead.
    if all(r["status"] == "success" for r in models):
        tests, manifest = _dbt_step(ctx, ["test"])
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
    spec = ctx.state["spec"]
    fingerprint = publish.assert_published(ctx.cfg.warehouse, spec)  # read only what passed validation
    check_feature_availability(spec, dt.date.fromisoformat(fingerprint["first_event"][:10]))
    table = read_features(ctx.cfg.warehouse, spec)
    data = to_dataset(table, spec, ctx.state["split"])
    model = build_model(ctx.cfg.model.family, ctx.cfg.model.params, ctx.cfg.seed)
    ctx.echo(f"fitting {ctx.cfg.model.family} on {int(data.train.sum()):,} rows x {len(spec.features)} features")
    fit(model, data.X[data.train], data.y[data.train])
    onnx_bytes = export_onnx(model, len(spec.features))
    parity = check_export_parity(model, onnx_bytes, data.X[data.test])
    if not parity.passed:
        raise StageError(
            f"ONNX export is not faithful on the test split: {parity.label_mismatches} label mismatches, "
            f"max probability difference {parity.max_abs_probability_diff:.2e} (tolerance {parity.tolerance:.0e})"
        )
    ctx.state.update(data=data, model=model, onnx=onnx_bytes, export_parity=parity)
    return {"train_rows": int(data.train.sum()), "onnx_bytes": len(onnx_bytes)}


def _code_version(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _lineage(ctx: RunContext) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    split: SplitBoundaries = ctx.state["split"]
    return {
        "data_fingerprint": ctx.state["fingerprint"],
        "dbt_manifest_sha256": dbt_manifest.manifest_digest(ctx.state["manifest"]),
        "code_version": _code_version(Path(__file__).resolve().parent.parent),
        "packages": versions,
        "config_sha256": hashlib.sha256(ctx.cfg.source_text.encode()).hexdigest(),
        "model": {"family": ctx.cfg.model.family, "params": ctx.cfg.model.params},
        "seed": ctx.cfg.seed,
        "split": {"train_end": split.train_end.isoformat(), "valid_end": split.valid_end.isoformat()},
        "feature_meta": ctx.state["spec"].feature_meta,
    }


def _frozen_tables(ctx: RunContext) -> dict[str, Any]:
    import duckdb

    relations = dbt_manifest.fitted_state_relations(ctx.state["manifest"])
    with duckdb.connect(str(ctx.cfg.warehouse), read_only=True) as con:
        return {name: con.execute(f"select * from {rel}").fetch_arrow_table() for name, rel in sorted(relations.items())}


def _evaluate(ctx: RunContext) -> dict[str, Any]:
    data, model, spec = ctx.state["data"], ctx.state["model"], ctx.state["spec"]
    scores = {name: predict_scores(model, data.X[mask]) for name, mask in
              (("train", data.train), ("validation", data.valid), ("test", data.test))}
    threshold = choose_threshold(data.y[data.valid], scores["validation"])
    metrics = {name: binary_metrics(data.y[mask], scores[name], threshold) for name, mask in
               (("train", data.train), ("validation", data.valid), ("test", data.test))}
    parity = ctx.state["export_parity"]
    metrics["export_parity"] = {"rows": parity.rows, "max_abs_probability_diff": parity.max_abs_probability_diff,
                                "label_mismatches": parity.label_mismatches}
    serving_sql = compile_inline(ctx.dbt(), "{{ " + ctx.cfg.dbt.serving_macro + "() }}")
    bundle_id, path = write_bundle(
        registry.bundles_dir(ctx.cfg.registry),
        model_bytes=ctx.state["onnx"],
        serving_sql=serving_sql,
        tables=_frozen_tables(ctx),
        manifest=bundle_manifest_fields(
            task=ctx.cfg.task,
            feature_names=spec.features,
            input_schema=ctx.state["input_schema"],
            threshold=threshold,
            metrics=metrics,
            lineage=_lineage(ctx),
        ),
    )
    serving_check = _serving_check(ctx, path)
    ctx.state.update(bundle_id=bundle_id, bundle_path=path, metrics=metrics)
    return {"bundle_id": bundle_id[:12], "test_roc_auc": round(metrics["test"]["roc_auc"], 4),
            "test_pr_auc": round(metrics["test"]["pr_auc"], 4), **serving_check}


def _serving_check(ctx: RunContext, bundle_path: Path) -> dict[str, Any]:
    """Score raw test-day rows through the bundle's serving path; features must equal the mart's."""
    import duckdb

    spec, split = ctx.state["spec"], ctx.state["split"]
    fields = [f.name for f in ctx.state["input_schema"]]
    files = [p for p in partition_files(ctx.cfg.landing, ctx.source_table) if p.stem >= split.valid_end.isoformat()]
    with duckdb.connect() as con:
        raw = con.execute(
            f"select {', '.join(fields)} from read_parquet(?)", [[str(p) for p in files]]
        ).fetch_arrow_table()
    rng = np.random.default_rng(ctx.cfg.seed)
    raw = raw.take(np.sort(rng.choice(raw.num_rows, size=min(PARITY_ROWS, raw.num_rows), replace=False)))
    predictor = Predictor(load_bundle(bundle_path))
    try:
        served = predictor.features(raw)
    finally:
        predictor.close()
    keys = served.column(spec.key).to_pylist()
    with duckdb.connect(str(ctx.cfg.warehouse), read_only=True) as con:
        con.register("keys", served.select([spec.key]))
        mart = con.execute(
            f"select m.* from keys k join {spec.relation} m using ({spec.key})"
        ).fetch_arrow_table()
    by_key = {k: i for i, k in enumerate(mart.column(spec.key).to_pylist())}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise StageError(f"serving check: {len(missing)} raw test rows have no row in {spec.relation}, e.g. {missing[:3]}")
    order = [by_key[k] for k in keys]
    for feature in spec.features:
        got = served.column(feature).to_numpy(zero_copy_only=False).astype(np.float64)
        want = mart.column(feature).to_numpy(zero_copy_only=False).astype(np.float64)[order]
        bad = ~np.isclose(got, want, rtol=FEATURE_RTOL, atol=0, equal_nan=True)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise StageError(
                f"serving check: feature {feature!r} differs from the warehouse for {int(bad.sum())} of {len(keys)} rows; "
                f"first: {spec.key}={keys[i]!r}, served {got[i]!r}, warehouse {want[i]!r}"
            )
    return {"serving_check_rows": len(keys)}


def _deploy(ctx: RunContext) -> dict[str, Any]:
    record = registry.promote(ctx.cfg.registry, ctx.state["bundle_id"], by=f"orchestrate.py run {ctx.run_id}",
                              reason="trained and evaluated by the pipeline")
    return {"champion": record["bundle_id"][:12], "previous": (record["previous_bundle_id"] or "none")[:12]}


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
    Stage("train", "fit the model on the training days and export ONNX (parity-checked)",
          ("<published schemas>", "spec", "split"), ("model", "onnx", "data"), _train),
    Stage("evaluate", "metrics, threshold, model bundle and a serving check on raw test rows",
          ("model", "onnx", "data", "manifest", "fingerprint"), ("bundle_id", "<bundle>"), _evaluate),
    Stage("deploy", "make the bundle the registry's champion (atomic pointer swap)",
          ("bundle_id",), ("<registry champion>",), _deploy),
)


def run_stages(ctx: RunContext, stages: tuple[Stage, ...] = STAGES) -> list[tuple[str, float, dict[str, Any]]]:
    """Run ``stages`` in order; a failure raises ``StageError`` naming the stage and the cause."""
    done = []
    for stage in stages:
        ctx.echo(f"[{stage.name}] {stage.description}")
        started = time.perf_counter()
        try:
            summary = stage.run(ctx)
        except (ValueError, RuntimeError, LookupError, OSError, duckdb.Error) as exc:
            raise StageError(f"stage {stage.name!r} failed: {exc}", stage=stage.name,
                             checks=getattr(exc, "checks", ())) from exc
        seconds = time.perf_counter() - started
        done.append((stage.name, seconds, summary))
        ctx.echo(f"[{stage.name}] done in {seconds:.1f}s " + json.dumps(summary, default=str))
    return done
