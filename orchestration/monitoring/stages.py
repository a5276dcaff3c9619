"""The two monitoring stages of the DAG, run after ``publish`` and before ``train``:

    publish -> monitor -> retrain_policy -> train -> evaluate -> gates -> deploy

``monitor`` builds the dbt models tagged ``monitoring`` (``dbt build --select tag:monitoring``:
models, their data tests and unit tests) over the published tables and the prediction logs,
reports malformed log lines and runs the replay skew audit; both record alerts in
``validation.alerts`` and do not halt the run. ``retrain_policy`` measures, decides and records;
it puts the ``Decision`` on ``ctx.state["retrain_decision"]`` and never raises when the policy
does not fire: the engine then skips train..deploy with the decision's reasons (see ``policy_holds``).
"""

from __future__ import annotations

import dataclasses
from typing import Any


from orchestration import checks
from orchestration.context import RunContext
from orchestration.dbt import run_dbt
from orchestration.ingest import source_relation_vars
from orchestration.monitoring import consistency as online_offline
from orchestration.monitoring import policy, replay
from orchestration.outputs import MONITORING_TAG
from serving.registry import read_champion
from training.warehouse import connect_warehouse

RETRAIN_STAGES = ("train", "evaluate", "gates", "deploy")
"""Stages that run only when the policy fires."""


def _monitor_vars(ctx: RunContext) -> dict[str, Any]:
    """The monitoring models' vars: what they read about the project (pipeline.yml), the
    ingested source relation, and the deployed model's training window, so drift is measured
    against what the champion learned from (its baseline version is built and selected)."""
    cfg = ctx.cfg
    out: dict[str, Any] = source_relation_vars(cfg.dbt.source, ctx.source_table)
    champion = policy.champion_manifest(cfg.registry) or {}
    split = (champion.get("lineage") or {}).get("split") or {}
    if split.get("train_end"):
        out.update(train_end=split["train_end"], valid_end=split.get("valid_end"))
    else:
        base = ctx.dbt(ctx.state["split"]).vars
        out.update({k: base[k] for k in ("train_end", "valid_end") if k in base})
    out.update(ml_source=cfg.dbt.source, ml_features_model=cfg.dbt.features_model, ml_label=cfg.label,
               ml_task=cfg.task, prediction_logs_path=str(replay.prediction_logs_dir(cfg)),
               drift_psi_threshold=cfg.monitoring.drift_psi_threshold)
    return out


def _malformed_lines(ctx: RunContext) -> list[str]:
    with connect_warehouse(ctx.cfg.warehouse, read_only=True) as con:
        rows = con.execute("select log_file, count_malformed, count_lines, first_malformed_line, first_malformed_reason "
                           "from monitoring.monitoring_log_quality where count_malformed > 0 order by log_file").fetchall()
    return [f"{f}: {bad} of {lines} lines malformed, first at line {line}: {reason}" for f, bad, lines, line, reason in rows]


def _has_monitoring_models(manifest: dict[str, Any]) -> bool:
    return any(n["resource_type"] == "model" and MONITORING_TAG in n.get("tags", []) for n in manifest["nodes"].values())


def monitor(ctx: RunContext) -> dict[str, Any]:
    """dbt monitoring models, malformed-line report, replay skew audit."""
    if read_champion(ctx.cfg.registry) is None:
        # Nothing deployed yet: no baseline to drift from and no traffic. The stage still finishes,
        # so it reruns only when data, prediction logs or the monitoring models change.
        ctx.state["monitoring"] = {"run_id": ctx.run_id, "champion": None}
        return {"monitored": False, "why": "no champion yet"}
    if not _has_monitoring_models(ctx.state["manifest"]):
        # A project without monitoring models (a dataset brought with its own dbt files, say):
        # said, not failed on the demo's tables; the retrain policy then judges what it can.
        why = f"the dbt project has no models tagged {MONITORING_TAG!r} (drift, volume, consistency)"
        ctx.echo(f"monitor: nothing to monitor: {why}")
        ctx.state["monitoring"] = {"run_id": ctx.run_id, "monitored": False}
        return {"monitored": False, "why": why}
    dbt = dataclasses.replace(ctx.dbt(), vars=_monitor_vars(ctx))
    run_dbt(dbt, ["build", "--select", "tag:monitoring"],
            echo=lambda line: ctx.echo("dbt " + line.split("  ", 1)[-1].strip()))
    malformed = _malformed_lines(ctx)
    for message in malformed:
        ctx.echo(f"WARN prediction log: {message}")
    if malformed:
        checks.record_alert(ctx.cfg.warehouse, ctx.run_id, stage="monitor", severity="warn",
                            checks=("prediction_log_malformed_lines",), message="\n".join(malformed))
    consistency = online_offline.check(ctx.cfg.warehouse)
    ctx.echo(consistency.describe())
    if not consistency.passed:
        checks.record_alert(ctx.cfg.warehouse, ctx.run_id, stage="monitor", severity="error",
                            checks=tuple(sorted({f"online_offline_consistency on {f}" for _, _, f, _, _ in consistency.below})),
                            message=consistency.describe())
    online_offline.served_vs_point_in_time(ctx.cfg.warehouse, ctx.cfg.registry, ctx.state["spec"], ctx.cfg.task)
    report = replay.audit(ctx.cfg, ctx.state["manifest"])
    ctx.echo(report.describe())
    if not report.passed:
        checks.record_alert(ctx.cfg.warehouse, ctx.run_id, stage="monitor", severity="error",
                            checks=tuple(f"replay_skew on {f}" for f in report.by_field) or ("replay_skew",),
                            message=report.describe())
    summary = {"malformed_log_files": len(malformed), "consistency_below": len(consistency.below),
               "replayed": report.rows, "replay_pending": report.pending,
               "replay_differing_rows": report.differing_rows}
    # The run id makes this output new whenever monitor reran, so the policy re-decides on fresh tables.
    ctx.state["monitoring"] = {"run_id": ctx.run_id, **summary}
    return summary


def policy_holds(ctx: RunContext) -> str | None:
    """The `when` of train..deploy: why they do not run in this run, or None when the policy fired."""
    decision = ctx.state["retrain_decision"]
    return None if decision.fire else "retrain policy holds: " + "; ".join(decision.reasons)


def retrain_policy(ctx: RunContext) -> dict[str, Any]:
    """Measure, decide, record; put the Decision on ctx.state["retrain_decision"]."""
    measured = policy.measure(ctx.cfg, ctx.state["spec"])
    decision = policy.decide(measured, ctx.cfg.monitoring)
    policy.record(ctx.cfg.warehouse, ctx.run_id, decision, measured)
    ctx.state["retrain_decision"] = decision
    for reason in decision.reasons:
        ctx.echo(f"retrain policy: {'FIRE' if decision.fire else 'hold'}: {reason}")
    return {"fire": decision.fire, "reasons": len(decision.reasons)}
