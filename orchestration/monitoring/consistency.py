"""Proof on live traffic: what was served against what the warehouse computes for the same events.

Once a served event has landed, ``monitoring_daily_consistency`` (dbt) compares the features the
server used (logged with each prediction, entity state from the online store) with the
warehouse's point-in-time features for that event, per day and feature. Here: a share equal
under ``THRESHOLD`` raises an error alert, and the champion's scores on the warehouse's features
are set beside the served scores, so served and point-in-time performance are reported side by
side (``monitoring.served_vs_point_in_time``, read by the report and the retrain policy).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from serving import registry
from serving.bundle import load_bundle
from serving.predictor import ModelScorer
from training.dbt_manifest import FeatureSpec
from training.metrics import task_metrics
from training.warehouse import connect_warehouse

THRESHOLD = 0.999
DDL = """
create schema if not exists monitoring;
create or replace table monitoring.served_vs_point_in_time (
    day date, model_id varchar, count_rows bigint, count_scores_equal bigint, served_roc_auc double,
    point_in_time_roc_auc double, computed_at timestamp
)"""


@dataclass(frozen=True)
class ConsistencyReport:
    """Days and features whose served features differ from the warehouse's too often."""

    compared: int
    """Served predictions compared (those whose event has landed), summed over features."""
    below: tuple[tuple[dt.date, str, str, float, int], ...]
    """(day, model, feature, share equal, rows) under the threshold."""

    @property
    def passed(self) -> bool:
        return not self.below

    def describe(self) -> str:
        if not self.compared:
            return "online/offline consistency: no served prediction has landed yet"
        if self.passed:
            return f"online/offline consistency: {self.compared} served feature values equal the warehouse's (>= {THRESHOLD:.1%})"
        shown = "; ".join(f"{day} {feature}: {share:.2%} of {rows} equal (model {model[:12]})"
                          for day, model, feature, share, rows in self.below[:5])
        return (f"online/offline consistency under {THRESHOLD:.1%} on {len(self.below)} day-feature(s): {shown}. "
                "The served entity state missed events the warehouse has: check that every event goes through "
                "the server or the materialize stage, and monitoring.monitoring_daily_consistency")


def check(warehouse: Path) -> ConsistencyReport:
    with connect_warehouse(warehouse, read_only=True) as con:
        if not _exists(con, "monitoring", "monitoring_daily_consistency"):
            return ConsistencyReport(0, ())
        total = con.execute("select coalesce(sum(count_compared), 0) from monitoring.monitoring_daily_consistency").fetchone()[0]
        rows = con.execute(
            "select day, model_id, feature_name, share_equal, count_compared from monitoring.monitoring_daily_consistency "
            "where share_equal < ? order by share_equal, day, feature_name", [THRESHOLD]).fetchall()
    return ConsistencyReport(int(total), tuple((d, m, f, float(s), int(n)) for d, m, f, s, n in rows))


def served_vs_point_in_time(warehouse: Path, registry_dir: Path, spec: FeatureSpec, task: str) -> int:
    """Score the warehouse's features of every landed served event with the model that served it,
    and record per day: rows, scores equal to the served ones, served and point-in-time ROC AUC."""
    columns = ", ".join(f'f."{c}"' for c in spec.features)
    with connect_warehouse(warehouse, read_only=True) as con:
        if not _exists(con, "staging", "stg_serving__predictions"):
            return 0
        rows = con.execute(
            f'select s.event_date, s.model_id, s.score, f."{spec.label}", {columns} '
            f'from staging.stg_serving__predictions s join {spec.relation} f on s.event_key = cast(f."{spec.key}" as varchar) '
            "order by s.event_date, s.model_id").fetch_arrow_table()
    out = []
    bundles = registry.bundles_dir(registry_dir)
    for day, model_id in sorted(set(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()))):
        if not (bundles / model_id).is_dir():
            continue
        mask = np.asarray([d == day and m == model_id for d, m in zip(rows.column(0).to_pylist(), rows.column(1).to_pylist())])
        part = rows.filter(mask)
        matrix = np.column_stack([part.column(4 + j).to_numpy(zero_copy_only=False).astype(np.float64)
                                  for j in range(len(spec.features))]).astype(np.float32)
        pit = ModelScorer(load_bundle(bundles / model_id)).scores(matrix)
        served = part.column(2).to_numpy(zero_copy_only=False).astype(np.float64)
        y = part.column(3).to_numpy(zero_copy_only=False)
        served_auc = pit_auc = None
        if task == "binary" and len(np.unique(y)) == 2:
            served_auc = task_metrics(task, y.astype(int), np.column_stack([1 - served, served]))["roc_auc"]
            pit_auc = task_metrics(task, y.astype(int), np.column_stack([1 - pit, pit]))["roc_auc"]
        equal = int((np.abs(served - pit) <= 1e-5).sum()) if task != "multiclass" else 0
        out.append((day, model_id, part.num_rows, equal, served_auc, pit_auc))
    with connect_warehouse(warehouse) as con:
        con.execute(DDL)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        if out:
            con.executemany("insert into monitoring.served_vs_point_in_time values (?, ?, ?, ?, ?, ?, ?)",
                            [[*r, now] for r in out])
    return len(out)


def _exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                            [schema, name]).fetchone()[0])
