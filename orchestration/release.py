"""The release path: evaluate (write the candidate bundle), gates, then deploy or halt.

A candidate bundle is written under ``<registry>/candidates/``; only a candidate that passes
every gate is moved to ``<registry>/bundles/`` and promoted. A failing candidate stays where it
is, with its gate report, for inspection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import subprocess
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from orchestration.context import RunContext
from orchestration.faults import fault_injected, pause_point, with_bool_where
from orchestration.promotion import promote
from orchestration.dbt import compile_inline
from orchestration.errors import StageError
from orchestration.ingest import partition_files
from orchestration.landing_layout import partition_day, scan_sql
from serving import registry
from serving.bundle import FUSED_FILE, FUSED_GATE, Bundle, InputField, load_bundle, write_gate_report
from serving.errors import BundleError
from serving.predictor import ModelScorer, Predictor
from training import dbt_manifest
from training.bundle import bundle_manifest_fields, write_bundle
from training.data import Dataset, SplitBoundaries
from training.metrics import PRIMARY_METRIC
from training.errors import FusedCompileError
from training.edge_cases import edge_case_rows
from training.fused import FusedModel, compile_fused
from training.fused_parity import FusedVerdict, verify_fused
from training.gates import (GateResult, latency_gate, metric_gates, regression_gate, report_table,
                            size_gate, slice_gates)
from training.online import store_as_of
from training.parity import ParityReport, Replayed, check_parity, held_out_raw_rows, one_row_per_key, replay
from training.run import TrainedModel
from training.serving_sql import check_serving_sql, request_schema
from training.tracking import RunRecord, record_gates
from training.warehouse import connect_warehouse

PACKAGES = ("dbt-core", "dbt-duckdb", "duckdb", "scikit-learn", "skl2onnx", "onnx", "onnxruntime",
            "numpy", "pyarrow", "pandas")


def _code_version(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def run_record(ctx: RunContext, error: str | None = None) -> RunRecord:
    """The tracking record of a run whose train stage ran."""
    trained: TrainedModel = ctx.state["trained"]
    return RunRecord(
        run_id=ctx.run_id,
        status="succeeded" if error is None else f"failed at {ctx.current_stage}",
        lineage=_lineage(ctx),
        metrics=trained.metrics,
        search=None if trained.search is None else {"metric": trained.search.metric, "trials": trained.search.trials},
        durations={**ctx.durations, **{f"train.{k}": v for k, v in trained.durations.items()}},
        task=ctx.cfg.task,
        onnx_sha256=trained.onnx_sha256,
        bundle_id=dict.get(ctx.state, "bundle_id"),
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
        # The dbt logic the features are built from (orchestration/outputs.py, dbt_logic_digest).
        "dbt_manifest_sha256": ctx.state["feature_lineage"],
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
    with connect_warehouse(ctx.cfg.warehouse, read_only=True) as con:
        # Sorted, so the same warehouse contents always freeze into the same bytes.
        return {name: con.execute(f"select * from {rel} order by all").fetch_arrow_table()
                for name, rel in sorted(relations.items())}


def _fused_model(ctx: RunContext, provisional: Bundle) -> tuple[FusedModel | None, FusedVerdict | None, str | None]:
    """The fused model if it compiles, loads, runs and matches the SQL path; else why not.

    Decided here, before the bundle is sealed, so the served path is part of the content hash.
    Nothing that goes wrong here stops the run: the SQL path serves instead."""
    spec, trained = ctx.state["spec"], ctx.state["trained"]
    schema = provisional.manifest.input_schema
    try:
        fused = compile_fused(provisional.serving_sql, schema, provisional.tables, spec.features,
                              trained.onnx, {e.relation: e for e in provisional.manifest.entity_state})
    except FusedCompileError as exc:
        return None, None, str(exc)
    except Exception as exc:  # noqa: BLE001 (a compiler fault is a refusal, never a failed run)
        return None, None, f"the fused compiler failed ({type(exc).__name__}: {exc}); please report it"
    if fault_injected("fused_load"):  # tests: a graph ONNX Runtime cannot load (orchestration/faults.py)
        fused = dataclasses.replace(fused, onnx=with_bool_where(fused.onnx))
    raw = _holdout_rows(ctx, schema)
    edges = _distinct_events(edge_case_rows(raw, list(schema), ctx.cfg.seed), ctx.state["states"])
    candidate = dataclasses.replace(provisional, fused_bytes=fused.onnx, manifest=dataclasses.replace(
        provisional.manifest, fused=_fused_entry(fused)))
    with store_as_of(ctx.cfg.warehouse, ctx.state["states"], _holdout_start(ctx)) as store:
        verdict = verify_fused(candidate, raw, edges, store)
    return (fused, verdict, None) if verdict.passed else (None, verdict, verdict.detail)


def _distinct_events(rows: pa.Table, states: tuple[dbt_manifest.EntityStateModel, ...]) -> pa.Table:
    """Edge cases as events of their own: each copies a held-out row, so it gets a fresh event key."""
    for state in states:
        name = state.spec.event_key
        column = rows.column(name)
        fresh = [f"edge_case_{i}" for i in range(rows.num_rows)] if pa.types.is_string(column.type) else \
            [-(i + 1) for i in range(rows.num_rows)]
        rows = rows.set_column(rows.schema.get_field_index(name), name, pa.array(fresh, type=column.type))
    return rows


def _fused_entry(fused: FusedModel, verdict: FusedVerdict | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": FUSED_FILE, "inputs": [f.name for f in fused.inputs],
                             "event_inputs": list(fused.event_inputs)}
    if verdict is not None:
        entry["verified"] = verdict.to_json()
    return entry


def evaluate(ctx: RunContext) -> dict[str, Any]:
    """Compile the serving SQL, refuse unservable features, decide the fused path, write the candidate bundle."""
    spec, trained = ctx.state["spec"], ctx.state["trained"]
    serving_sql = compile_inline(ctx.dbt(ctx.state["split"], ctx.state["dbt_vars"]), "{{ " + ctx.cfg.dbt.serving_macro + "() }}")
    tables = _frozen_tables(ctx)
    states = dbt_manifest.entity_states(ctx.state["manifest"])
    ctx.state["states"] = states
    # Refuse features that cannot run row by row (or read the future) before anything is written.
    check_serving_sql(serving_sql, tables, {s.spec.relation: s.spec for s in states})
    # The request carries what the features read (and what the store and monitoring need), not
    # every landing column.
    keep = dbt_manifest.always_requested(ctx.state["manifest"], ctx.cfg.dbt.source).union(
        *({s.spec.key, s.spec.event_key, s.spec.time, *s.spec.fields} for s in states))
    schema = request_schema(serving_sql, ctx.state["input_schema"], keep)
    manifest = bundle_manifest_fields(
        task=ctx.cfg.task,
        feature_names=spec.features,
        input_schema=schema,
        threshold=trained.threshold,
        classes=trained.classes,
        metrics=trained.metrics,
        lineage=_lineage(ctx),
        entity_state=tuple(s.spec for s in states),
    )
    provisional = Bundle(registry.candidates_dir(ctx.cfg.registry), manifest, trained.onnx, serving_sql, tables)
    fused, verdict, refused = _fused_model(ctx, provisional)
    if refused:
        ctx.echo(f"fused model switched off, the SQL path will serve: {refused}")
    elif verdict is not None:
        ctx.echo(verdict.detail)
    bundle_id, path = write_bundle(
        registry.candidates_dir(ctx.cfg.registry),
        model_bytes=trained.onnx,
        serving_sql=serving_sql,
        tables=tables,
        manifest=dataclasses.replace(
            manifest,
            fused=_fused_entry(fused, verdict) if fused and verdict else None,
            fused_refused=refused,
        ),
        existing=(registry.bundles_dir(ctx.cfg.registry),),
        fused_bytes=fused.onnx if fused else None,
        before_rename=lambda: pause_point("bundle_write"),
    )
    ctx.state.update(bundle_id=bundle_id, metrics=trained.metrics)
    metric = PRIMARY_METRIC[ctx.cfg.task]
    return {"candidate": bundle_id[:12], f"test_{metric}": round(trained.metrics["test"][metric], 4),
            "fused": "verified" if fused else "switched off"}


def _holdout_start(ctx: RunContext) -> str:
    """The held-out window's first moment (the test days'), as an ISO time."""
    return ctx.state["split"].valid_end.isoformat()


def _holdout_rows(ctx: RunContext, fields: Sequence[InputField]) -> Any:
    """Held-out raw rows (test days, input fields only) for parity and gates: with entity state,
    the window's first ``parity.rows`` events in order (replayed through the store); else a
    seeded sample."""
    split: SplitBoundaries = ctx.state["split"]
    held_out = [p for p in partition_files(ctx.cfg.landing, ctx.source_table)
                if (day := partition_day(p)) is not None and day >= split.valid_end]
    states = ctx.state["states"]
    # Read with every declared type (a CSV is read whole), kept to the request's fields.
    declared = {f.name: f.type for f in ctx.state["input_schema"]}
    return held_out_raw_rows(held_out, [f.name for f in fields], ctx.cfg.parity.rows, ctx.cfg.seed,
                             time=states[0].spec.time if states else None, start=_holdout_start(ctx) if states else None,
                             scan=scan_sql(held_out, declared) if held_out else None)


def _parity_gate(report: ParityReport) -> GateResult:
    return GateResult("training/serving parity (mismatched rows)", float(report.mismatched_rows), 0.0, "<=",
                      report.passed, report.describe())


def _fused_gate(bundle: Bundle) -> GateResult:
    """Not blocking, and decided when the bundle was built (it is in the content hash): a fused
    model that did not verify was left out, and the SQL path serves."""
    if bundle.manifest.fused is None:
        return GateResult(f"{FUSED_GATE} (switched off)", None, None, "", False,
                          f"the SQL path serves: {bundle.manifest.fused_refused}", blocking=False)
    verified = bundle.manifest.fused.get("verified", {})
    return GateResult(f"{FUSED_GATE} (max score difference)", verified.get("max_score_diff"), None, "<=", True,
                      str(verified.get("detail", "verified when the bundle was built")), blocking=False)


def _export_gate(trained: TrainedModel) -> GateResult:
    p = trained.export_parity
    return GateResult("ONNX vs scikit-learn (max difference)", p.max_abs_diff, p.tolerance, "<=", p.passed,
                      f"{p.rows} test rows, {p.label_mismatches} label mismatches")


def _scored_holdout(ctx: RunContext, candidate: Bundle) -> pa.Table:
    """The test split's features, label and the candidate's ONNX scores, for slice gates."""
    data: Dataset = ctx.state["data"]
    spec = ctx.state["spec"]
    X = data.X[data.test]
    columns = {f: X[:, j] for j, f in enumerate(spec.features)}
    columns[spec.label] = data.y[data.test]
    output = _scores(candidate, X)
    if ctx.cfg.task == "binary":
        columns["score"] = output[:, 1]
    elif ctx.cfg.task == "multiclass":
        columns.update({f"score_{i}": output[:, i] for i in range(output.shape[1])})
    else:
        columns["score"] = output
    return pa.table(columns)


def _champion_comparison(ctx: RunContext, candidate: Bundle, cand: Replayed) -> GateResult:
    """Candidate and champion, each through its own serving path, on the same held-out raw rows."""
    spec, trained = ctx.state["spec"], ctx.state["trained"]
    champion = registry.read_champion(ctx.cfg.registry)
    y = _labels(ctx, cand.keys)
    cand_scores = _scores(candidate, cand.matrix)
    champ_scores, error = None, None
    if champion is not None:
        try:
            champ_bundle = load_bundle(registry.bundles_dir(ctx.cfg.registry) / champion["bundle_id"])
        except BundleError as exc:
            if "format_version" in str(exc):  # a bundle of an older runtime: nothing to compare on this one
                return GateResult(f"no regression vs champion ({PRIMARY_METRIC[ctx.cfg.task]})", None, None, "", True,
                                  f"champion {champion['bundle_id'][:12]} is in a bundle format this runtime does not "
                                  f"read ({exc}); the candidate replaces it")
            error = str(exc)
        else:
            try:
                # The same held-out events, with the fields the champion's request schema has.
                fields = champ_bundle.manifest.input_schema
                champ = replay(champ_bundle, _holdout_rows(ctx, fields), ctx.cfg.warehouse, spec.key,
                               _raw_time(ctx, fields), ctx.state["states"], _holdout_start(ctx))
                champ_scores = _scores(champ_bundle, champ.matrix)
            except (ValueError, LookupError, OSError, duckdb.Error, BundleError) as exc:
                error = str(exc)
    return regression_gate(ctx.cfg.task, y, cand_scores, champ_scores, ctx.cfg.gates.regression_tolerance,
                           ctx.state["data"].classes, trained.threshold,
                           champion["bundle_id"] if champion else None, error)


def _raw_time(ctx: RunContext, fields: Sequence[InputField]) -> str | None:
    """The raw field the replay orders by: the entity's event time (any timestamp field without
    entity state; None when the raw fields hold no timestamp)."""
    states = ctx.state["states"]
    if states:
        return states[0].spec.time
    return next((f.name for f in fields if f.type == "timestamp"), None)


def _scores(bundle: Any, matrix: np.ndarray) -> np.ndarray:
    """Model output in the shape ``task_metrics`` takes."""
    scores = ModelScorer(bundle).scores(matrix)
    return np.column_stack([1 - scores, scores]) if bundle.manifest.task == "binary" else scores


def _labels(ctx: RunContext, keys: pa.Array) -> np.ndarray:
    spec = ctx.state["spec"]
    with connect_warehouse(ctx.cfg.warehouse, read_only=True) as con:
        con.register("keys", pa.table({"__key": keys, "__order": pa.array(np.arange(len(keys)))}))
        table = con.execute(
            f'select m."{spec.label}" from keys k join {one_row_per_key(spec)} m on m."{spec.key}" = k.__key '
            'order by k.__order'
        ).fetch_arrow_table()
    if table.num_rows != len(keys):
        raise StageError(f"{len(keys) - table.num_rows} held-out rows have no label in {spec.relation}")
    values = table.column(0).to_numpy(zero_copy_only=False)
    return values.astype(np.int64) if ctx.cfg.task == "binary" else values


def _gate_results(ctx: RunContext, stack: contextlib.ExitStack, path: Path) -> list[GateResult]:
    cfg, trained, spec = ctx.cfg, ctx.state["trained"], ctx.state["spec"]
    candidate = load_bundle(path)
    raw = _holdout_rows(ctx, candidate.manifest.input_schema)
    ctx.echo(f"parity check: replaying {raw.num_rows:,} held-out raw rows through the serving path and the online store")
    # One replay of the candidate serves both the parity gate and the champion comparison.
    store = stack.enter_context(store_as_of(cfg.warehouse, ctx.state["states"], _holdout_start(ctx)))
    served = replay(candidate, raw, cfg.warehouse, spec.key, _raw_time(ctx, candidate.manifest.input_schema),
                    ctx.state["states"], _holdout_start(ctx),
                    store)
    parity = check_parity(candidate, served, cfg.warehouse, spec,
                          feature_rtol=cfg.parity.feature_rtol, score_atol=cfg.parity.score_atol)
    ctx.echo(parity.describe())
    fused = _fused_gate(candidate)
    results = [_parity_gate(parity), fused, _export_gate(trained)]
    results += metric_gates(trained.metrics["validation"], cfg.gates.metrics)
    results += slice_gates(_scored_holdout(ctx, candidate), cfg.task, cfg.gates.slices, ctx.state["data"].classes,
                           trained.threshold, spec.label)
    results.append(size_gate(len(trained.onnx), cfg.gates.max_model_bytes))
    # Latency is measured on the path that will serve: the fused model when it verified.
    # ... with the state the replay left in its store: the held-out users' real recent events.
    predictor = Predictor(candidate, store=store)
    try:
        records = raw.slice(0, cfg.gates.latency_samples).to_pylist()
        results.append(latency_gate(predictor, records, cfg.gates.max_p99_latency_ms))
    finally:
        predictor.close()
    results.append(_champion_comparison(ctx, candidate, served))
    return results


def gates(ctx: RunContext) -> dict[str, Any]:
    """Run every gate; record the report; halt (no deploy) when any gate fails."""
    cfg, bundle_id = ctx.cfg, ctx.state["bundle_id"]
    path = registry.find_bundle(cfg.registry, bundle_id)  # a candidate, or published by an earlier deploy
    with contextlib.ExitStack() as stack:  # the replay's online store, removed after the gates
        results = _gate_results(ctx, stack, path)
    write_gate_report(path, [r.to_json() for r in results])
    record_gates(cfg.warehouse, ctx.run_id, bundle_id, [r.to_json() for r in results])
    ctx.state["gate_results"] = results
    ctx.echo(report_table(results))
    failed = [r for r in results if not r.passed and r.blocking]
    if failed:
        listed = "; ".join(f"{r.gate}: {r.value if r.value is None else f'{r.value:.6g}'} {r.comparison} "
                           f"{r.threshold if r.threshold is None else f'{r.threshold:.6g}'} {r.detail}".strip()
                           for r in failed)
        raise StageError(f"{len(failed)} of {len(results)} gates failed for candidate {bundle_id[:12]} "
                         f"(kept for inspection at {path}): {listed}", stage="gates",
                         checks=tuple(f"gate {r.gate}" for r in failed))
    return {"gates_passed": len(results)}


def deploy(ctx: RunContext) -> dict[str, Any]:
    """Move the candidate into the registry's bundles and make it the champion."""
    bundle_id = ctx.state["bundle_id"]
    path = registry.publish_candidate(ctx.cfg.registry, bundle_id)
    record = promote(ctx.cfg, bundle_id, by=f"orchestrate.py run {ctx.run_id}",
                     reason="passed every gate" + (f" ({len(ctx.state['gate_results'])})" if "gate_results" in ctx.state else ""))
    if not record["changed"]:
        ctx.echo(f"{bundle_id[:12]} is already the champion; nothing changed and nothing was recorded")
        return {"champion": bundle_id[:12], "changed": False}
    return {"champion": record["bundle_id"][:12], "previous": (record["previous_bundle_id"] or "none")[:12]}
