"""Run tracking in the warehouse (schema ``ml``), queryable with SQL, and optionally MLflow.

    ml.training_runs        one row per pipeline run that trained a model
    ml.run_metrics          one row per (run, split, metric)
    ml.run_stage_durations  one row per (run, stage)
    ml.gate_results         one row per (run, gate): value, threshold, verdict
    ml.promotions           one row per champion change: which bundle, by whom, when, why

Written by the orchestrator, the warehouse's only writer. MLflow is used only when it is
installed and MLFLOW_TRACKING_URI is set; it is never required.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.warehouse import connect_warehouse

DDL = """
create schema if not exists ml;
create table if not exists ml.training_runs (
    run_id varchar primary key,
    recorded_at timestamp not null,
    status varchar not null,
    task varchar,
    model_family varchar,
    params json,
    search json,
    seed bigint,
    config_sha256 varchar,
    data_fingerprint json,
    dbt_manifest_sha256 varchar,
    code_commit varchar,
    code_dirty boolean,
    packages json,
    onnx_sha256 varchar,
    bundle_id varchar,
    error varchar
);
create table if not exists ml.run_metrics (
    run_id varchar not null, split varchar not null, metric varchar not null, value double
);
create table if not exists ml.run_stage_durations (
    run_id varchar not null, stage varchar not null, seconds double not null
);
create table if not exists ml.gate_results (
    run_id varchar not null, bundle_id varchar not null, gate varchar not null, value double,
    comparison varchar, threshold double, passed boolean not null, detail varchar, recorded_at timestamp not null
);
create table if not exists ml.promotions (
    bundle_id varchar not null, previous_bundle_id varchar, promoted_at timestamp not null,
    promoted_by varchar not null, reason varchar not null
);
"""


@dataclass(frozen=True)
class RunRecord:
    """Everything recorded about one training run."""

    run_id: str
    status: str
    """``succeeded`` or ``failed at <stage>``."""
    lineage: dict[str, Any] = field(default_factory=dict)
    """As written into the bundle: model, seed, config hash, fingerprint, dbt hash, code, packages."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: dict[str, Any] | None = None
    durations: dict[str, float] = field(default_factory=dict)
    task: str | None = None
    onnx_sha256: str | None = None
    bundle_id: str | None = None
    error: str | None = None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def record_run(warehouse: Path, run: RunRecord) -> None:
    model = run.lineage.get("model", {})
    code = run.lineage.get("code_version", {})
    with connect_warehouse(warehouse) as con:
        con.execute(DDL)
        con.execute(
            "insert or replace into ml.training_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run.run_id, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), run.status, run.task,
             model.get("family"), _json(model.get("params")), _json(run.search), run.lineage.get("seed"),
             run.lineage.get("config_sha256"), _json(run.lineage.get("data_fingerprint")),
             run.lineage.get("dbt_manifest_sha256"), code.get("commit"), code.get("dirty"),
             _json(run.lineage.get("packages")), run.onnx_sha256, run.bundle_id, run.error],
        )
        rows = [(run.run_id, split, name, float(value))
                for split, values in run.metrics.items() for name, value in values.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)]
        if rows:
            con.executemany("insert into ml.run_metrics values (?, ?, ?, ?)", rows)
        if run.durations:
            con.executemany("insert into ml.run_stage_durations values (?, ?, ?)",
                            [(run.run_id, stage, seconds) for stage, seconds in run.durations.items()])
    log_to_mlflow(run)


def record_gates(warehouse: Path, run_id: str, bundle_id: str, results: list[dict[str, Any]]) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with connect_warehouse(warehouse) as con:
        con.execute(DDL)
        con.executemany(
            "insert into ml.gate_results values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, bundle_id, r["gate"], r["value"], r["comparison"], r["threshold"], r["passed"], r["detail"], now)
             for r in results],
        )


def record_promotion(warehouse: Path, record: dict[str, Any]) -> None:
    with connect_warehouse(warehouse) as con:
        con.execute(DDL)
        con.execute("insert into ml.promotions values (?, ?, ?, ?, ?)",
                    [record["bundle_id"], record["previous_bundle_id"],
                     dt.datetime.fromisoformat(record["promoted_at"]).replace(tzinfo=None), record["by"], record["reason"]])


def log_to_mlflow(run: RunRecord) -> bool:
    """Mirror the run into MLflow when it is installed and MLFLOW_TRACKING_URI is set."""
    if not os.environ.get("MLFLOW_TRACKING_URI") or importlib.util.find_spec("mlflow") is None:
        return False
    import mlflow  # optional: only imported when configured

    with mlflow.start_run(run_name=run.run_id):
        mlflow.log_params({f"model.{k}": v for k, v in (run.lineage.get("model", {}).get("params") or {}).items()})
        mlflow.set_tags({"status": run.status, "bundle_id": run.bundle_id or "", "onnx_sha256": run.onnx_sha256 or ""})
        for split, values in run.metrics.items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    mlflow.log_metric(f"{split}.{name}", float(value))
    return True


def list_runs(warehouse: Path, limit: int = 20) -> list[tuple[Any, ...]]:
    """Latest runs: id, time, status, family, test metric, bundle id."""
    with connect_warehouse(warehouse, read_only=True) as con:
        if not con.execute("select count(*) from information_schema.tables where table_schema = 'ml' "
                           "and table_name = 'training_runs'").fetchone()[0]:
            return []
        return con.execute("""
            select r.run_id, r.recorded_at, r.status, r.task, r.model_family,
                   max(m.value) filter (where m.split = 'test' and m.metric in ('roc_auc', 'macro_f1', 'rmse')) as test_metric,
                   r.bundle_id
            from ml.training_runs r left join ml.run_metrics m using (run_id)
            group by all order by r.recorded_at desc limit ?
        """, [limit]).fetchall()


def compare_runs(warehouse: Path, a: str, b: str) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for parameters, lineage and metrics of two runs."""
    with connect_warehouse(warehouse, read_only=True) as con:
        runs = {}
        for run_id in (a, b):
            found = con.execute("select * from ml.training_runs where starts_with(run_id, ?)", [run_id]).fetch_arrow_table()
            if found.num_rows != 1:
                raise LookupError(f"run {run_id!r}: {'no run' if found.num_rows == 0 else 'ambiguous prefix'}; "
                                  "list runs with `python orchestrate.py runs`")
            row = found.to_pylist()[0]
            metrics = con.execute("select split || '.' || metric, value from ml.run_metrics where run_id = ? order by 1",
                                  [row["run_id"]]).fetchall()
            runs[run_id] = {**{k: v for k, v in row.items() if k != "recorded_at"}, **dict(metrics)}
    keys = list(dict.fromkeys([*runs[a], *runs[b]]))
    return [(k, runs[a].get(k), runs[b].get(k)) for k in keys]
