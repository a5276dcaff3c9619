"""The retraining policy: measured values in, a frozen ``Decision`` out, every decision recorded.

``measure`` reads the warehouse (read only) and the registry; ``decide`` is pure; ``record``
appends the decision to ``monitoring.retrain_decisions``. Triggers (``pipeline.yml`` monitoring):

* no champion: the first run always trains;
* drift: an important column's PSI over the lookback days is at or above the threshold, and
  labelled rows exist after the champion's data (retraining on the same rows cannot fix drift);
* performance: served ROC AUC (labelled, lookback days) fell ``max_auc_drop`` below the champion's
  test ROC AUC, judged once ``min_positive_labels`` positives have landed;
* new labels: at least ``min_new_labelled_rows`` labelled rows landed after the champion's data;
* age: the newest landed or served day is ``max_model_age_days`` past the champion's data.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from orchestration.config import Monitoring, PipelineConfig
from serving import registry
from training.dbt_manifest import FeatureSpec
from training.warehouse import connect_warehouse

DDL = """
create schema if not exists monitoring;
create table if not exists monitoring.retrain_decisions (
    run_id varchar not null, decided_at timestamp not null, fire boolean not null,
    reasons varchar[] not null, champion_id varchar, measured json
);
"""


@dataclass(frozen=True)
class Decision:
    """Whether train..deploy run, and why (or why not)."""

    fire: bool
    """True: retrain now."""
    reasons: tuple[str, ...]
    """Each trigger that fired; when none did, why not (used as the skip reason)."""


@dataclass(frozen=True)
class Measured:
    """What the policy judges, as measured for one run."""

    champion_id: str | None = None
    """The deployed bundle, None before the first deploy."""
    champion_auc: float | None = None
    """The champion's test ROC AUC (from its bundle)."""
    champion_data_end: dt.date | None = None
    """Day of the last event in the champion's training data."""
    newest_day: dt.date | None = None
    """Newest day landed or served."""
    drift_psi: dict[str, float] = field(default_factory=dict)
    """Monitored column -> largest PSI over the lookback days (served or landed)."""
    drift_day: dict[str, str] = field(default_factory=dict)
    """Monitored column -> source and day of that largest PSI."""
    new_labelled_rows: int = 0
    """Published labelled rows after the champion's data."""
    served_auc: float | None = None
    """Count-weighted mean of daily ROC AUC of the champion's labelled predictions (lookback)."""
    positive_labels: int = 0
    """Positive labels behind ``served_auc``."""
    point_in_time_auc: float | None = None
    """The same served events' ROC AUC with the warehouse's point-in-time features (lookback):
    what the gates promised; a gap to ``served_auc`` is skew between online and offline state."""

    @property
    def model_age_days(self) -> int | None:
        if self.champion_data_end is None or self.newest_day is None:
            return None
        return (self.newest_day - self.champion_data_end).days


def decide(m: Measured, opts: Monitoring) -> Decision:
    """Apply the policy to measured values."""
    if m.champion_id is None:
        return Decision(True, ("no champion",))
    fired: list[str] = []
    waiting: list[str] = []
    drifted = {c: p for c, p in sorted(m.drift_psi.items()) if c in opts.important_features and p >= opts.drift_psi_threshold}
    if drifted:
        listed = ", ".join(f"{c} PSI {p:.3f} ({m.drift_day.get(c, '?')})" for c, p in drifted.items())
        if m.new_labelled_rows > 0:
            fired.append(f"drift: {listed} >= {opts.drift_psi_threshold:g}; {m.new_labelled_rows:,} new labelled rows to learn it from")
        else:
            waiting.append(f"drift: {listed} >= {opts.drift_psi_threshold:g}, but no labelled rows after the "
                           "champion's data yet: waiting for labels")
    if m.served_auc is not None and m.champion_auc is not None and m.positive_labels >= opts.min_positive_labels:
        if m.champion_auc - m.served_auc >= opts.max_auc_drop:
            fired.append(f"performance: served ROC AUC {m.served_auc:.4f} (point in time {_shown(m.point_in_time_auc)}) "
                     f"is {m.champion_auc - m.served_auc:.4f} below "
                         f"the champion's test ROC AUC {m.champion_auc:.4f} (allowed drop {opts.max_auc_drop:g}, "
                         f"{m.positive_labels} positive labels)")
    if m.new_labelled_rows >= opts.min_new_labelled_rows:
        fired.append(f"new labels: {m.new_labelled_rows:,} labelled rows after the champion's data "
                     f">= {opts.min_new_labelled_rows:,}")
    age = m.model_age_days
    if age is not None and age >= opts.max_model_age_days:
        fired.append(f"age: the newest day is {age} days past the champion's data (max {opts.max_model_age_days})")
    if fired:
        return Decision(True, tuple(fired))
    top = max(m.drift_psi.items(), key=lambda kv: kv[1], default=None)
    parts = [
        "no drift measured after the champion's data" if top is None else
        f"largest drift {top[0]} PSI {top[1]:.3f} (threshold {opts.drift_psi_threshold:g} on "
        f"{', '.join(opts.important_features) or 'nothing: monitoring.important_features is empty'})",
        "no labelled served predictions yet" if m.served_auc is None else
        f"served ROC AUC {m.served_auc:.4f} (point in time {_shown(m.point_in_time_auc)}) vs champion "
        f"{m.champion_auc} ({m.positive_labels} positive labels)",
        f"{m.new_labelled_rows:,} new labelled rows < {opts.min_new_labelled_rows:,}",
        f"model age {age} days < {opts.max_model_age_days}",
    ]
    return Decision(False, (*waiting, "no trigger: " + "; ".join(parts)))


def _shown(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


def _exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, name = relation.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                            [schema, name]).fetchone()[0])


def champion_manifest(registry_dir: Path) -> dict[str, Any] | None:
    """The champion bundle's manifest.json as a dict, or None before the first deploy."""
    pointer = registry.read_champion(registry_dir)
    if pointer is None:
        return None
    path = registry.bundles_dir(registry_dir) / pointer["bundle_id"] / "manifest.json"
    return json.loads(path.read_text())


def measure(cfg: PipelineConfig, spec: FeatureSpec) -> Measured:
    """Read what the policy judges from the monitoring marts, the published features mart
    (``spec``: its relation, timestamp and label) and the registry."""
    manifest = champion_manifest(cfg.registry)
    if manifest is None:
        return Measured()
    fingerprint = manifest.get("lineage", {}).get("data_fingerprint") or {}
    data_end = dt.date.fromisoformat(str(fingerprint["last_event"])[:10]) if fingerprint.get("last_event") else None
    auc = (manifest.get("metrics", {}).get("test") or {}).get("roc_auc")
    out: dict[str, Any] = {"champion_id": manifest["bundle_id"], "champion_auc": auc, "champion_data_end": data_end}
    lookback = cfg.monitoring.lookback_days
    after = data_end or dt.date.min
    with connect_warehouse(cfg.warehouse, read_only=True) as con:
        days: list[dt.date] = []
        if _exists(con, "monitoring.monitoring_daily_drift"):
            days = [r[0] for r in con.execute(
                "select distinct day from monitoring.monitoring_daily_drift where day > ? order by day desc limit ?",
                [after, lookback]).fetchall()]
            rows = con.execute(
                "select column_name, psi, data_source || ' ' || day from monitoring.monitoring_daily_drift "
                "where day in (select unnest(?::date[])) and psi is not null order by psi desc", [days]).fetchall()
            for column, psi, where in rows:
                if column not in out.setdefault("drift_psi", {}):
                    out["drift_psi"][column] = float(psi)
                    out.setdefault("drift_day", {})[column] = where
        if _exists(con, "monitoring.monitoring_daily_feature_drift"):
            # The model's features in landed data (7 days ending each day), by feature name.
            rows = con.execute(
                "select feature_name, psi, 'landed features, 7 days to ' || day from "
                "monitoring.monitoring_daily_feature_drift where day in (select distinct day from "
                "monitoring.monitoring_daily_feature_drift where day > ? order by day desc limit ?) "
                "and psi is not null order by psi desc", [after, lookback]).fetchall()
            for feature, psi, where in rows:
                if feature not in out.setdefault("drift_psi", {}):
                    out["drift_psi"][feature] = float(psi)
                    out.setdefault("drift_day", {})[feature] = where
        newest = []
        if _exists(con, spec.relation):
            newest.append(con.execute(f'select max("{spec.timestamp}")::date from {spec.relation}').fetchone()[0])
            out["new_labelled_rows"] = con.execute(
                f'select count(*) from {spec.relation} where "{spec.timestamp}"::date > ? and "{spec.label}" is not null',
                [after]).fetchone()[0]
        if _exists(con, "monitoring.monitoring_daily_predictions"):
            newest.append(con.execute("select max(day) from monitoring.monitoring_daily_predictions").fetchone()[0])
        out["newest_day"] = max((d for d in newest if d is not None), default=None)
        if _exists(con, "monitoring.monitoring_daily_performance") and days:
            auc_row = con.execute(
                "select sum(roc_auc * count_labelled) / nullif(sum(count_labelled) filter (where roc_auc is not null), 0), "
                "coalesce(sum(count_positive), 0) from monitoring.monitoring_daily_performance "
                "where model_id = ? and day in (select unnest(?::date[]))", [manifest["bundle_id"], days]).fetchone()
            out["served_auc"], out["positive_labels"] = (None if auc_row[0] is None else float(auc_row[0])), int(auc_row[1])
        if _exists(con, "monitoring.served_vs_point_in_time") and days:
            pit = con.execute(
                "select sum(point_in_time_roc_auc * count_rows) / nullif(sum(count_rows) filter (where point_in_time_roc_auc "
                "is not null), 0) from monitoring.served_vs_point_in_time where model_id = ? and day in "
                "(select unnest(?::date[]))", [manifest["bundle_id"], days]).fetchone()[0]
            out["point_in_time_auc"] = None if pit is None else float(pit)
    return Measured(**out)


def record(warehouse: Path, run_id: str, decision: Decision, measured: Measured) -> None:
    """Append the decision and what it was based on to monitoring.retrain_decisions."""
    values = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(measured).items()}
    values["model_age_days"] = measured.model_age_days
    with connect_warehouse(warehouse) as con:
        con.execute(DDL)
        con.execute("insert into monitoring.retrain_decisions values (?, ?, ?, ?, ?, ?)",
                    [run_id, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), decision.fire,
                     list(decision.reasons), measured.champion_id, json.dumps(values, default=str)])
