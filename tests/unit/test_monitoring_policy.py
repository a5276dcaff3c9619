"""The retraining policy's rules and the simulate command's bad-input errors (pure, fast)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.config import Monitoring
from orchestration.monitoring.policy import Decision, Measured, decide
from orchestration.monitoring.simulate import SimulationOptions
from orchestration.monitoring.errors import SimulationError

ROOT = Path(__file__).resolve().parents[2]
OPTS = Monitoring(important_features=("amount", "merchant_category", "country_code", "channel"), min_new_labelled_rows=10_000,
                  max_model_age_days=30)
CHAMPION = dict(champion_id="b" * 64, champion_auc=0.95, champion_data_end=dt.date(2026, 1, 20),
                newest_day=dt.date(2026, 1, 22))


def test_no_champion_fires() -> None:
    assert decide(Measured(), OPTS) == Decision(True, ("no champion",))


def test_stable_does_not_fire_and_says_why() -> None:
    d = decide(Measured(**CHAMPION, drift_psi={"country": 0.05}, new_labelled_rows=900), OPTS)
    assert not d.fire and "largest drift country PSI 0.050" in d.reasons[0]


def test_drift_on_important_feature_fires_once_labels_exist() -> None:
    waiting = decide(Measured(**CHAMPION, drift_psi={"country_code": 0.9}, new_labelled_rows=0), OPTS)
    assert not waiting.fire and "waiting for labels" in waiting.reasons[0]
    fired = decide(Measured(**CHAMPION, drift_psi={"country_code": 0.9}, new_labelled_rows=5), OPTS)
    assert fired.fire and fired.reasons[0].startswith("drift: country_code PSI 0.900")


def test_drift_on_unimportant_column_does_not_fire() -> None:
    assert not decide(Measured(**CHAMPION, drift_psi={"device": 5.0}, new_labelled_rows=5), OPTS).fire


def test_performance_drop_age_and_labels_fire() -> None:
    perf = decide(Measured(**CHAMPION, served_auc=0.80, positive_labels=40), OPTS)
    assert perf.fire and perf.reasons[0].startswith("performance:")
    few = decide(Measured(**CHAMPION, served_auc=0.80, positive_labels=5), OPTS)
    assert not few.fire
    old = decide(Measured(**{**CHAMPION, "newest_day": dt.date(2026, 3, 1)}), OPTS)
    assert old.fire and old.reasons[0].startswith("age:")
    labels = decide(Measured(**CHAMPION, new_labelled_rows=10_000), OPTS)
    assert labels.fire and labels.reasons[0].startswith("new labels:")


@pytest.mark.parametrize("days, drifts, message", [(0, (), "between 1 and 60"), (5, ("tsunami",), "unknown drift")])
def test_bad_simulation_options_are_named(days: int, drifts: tuple[str, ...], message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        SimulationOptions(days=days, drifts=drifts)


@pytest.mark.parametrize("args, message", [
    (["--days", "two"], "--days must be a whole number of days, got 'two'"),
    (["--days", "2", "--drift", "tsunami"], "unknown drift kind(s) ['tsunami']"),
])
def test_simulate_cli_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    cfg = tmp_path / "p.yml"
    cfg.write_text(f"paths: {{warehouse: {tmp_path}/w.duckdb, landing: {tmp_path}/l, artifacts: {tmp_path}/a}}\n")
    proc = subprocess.run([sys.executable, "orchestrate.py", "simulate", "--config", str(cfg), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"orchestrate simulate: {message}; expected some of "
                                               "['amount-shift', 'channel-mix', 'country-mix']"
                                               if "drift" in message else f"orchestrate simulate: {message}"]


def test_model_feature_drift_in_landed_data_is_measured_and_can_fire(tmp_path: Path) -> None:
    import json

    import duckdb

    from orchestration.config import Paths, PipelineConfig
    from orchestration.monitoring.policy import measure
    from training.dbt_manifest import FeatureSpec

    bundle = "c" * 64
    (tmp_path / "artifacts" / "registry" / "bundles" / bundle).mkdir(parents=True)
    (tmp_path / "artifacts" / "registry" / "champion.json").write_text(json.dumps({"bundle_id": bundle}))
    (tmp_path / "artifacts" / "registry" / "bundles" / bundle / "manifest.json").write_text(json.dumps({
        "bundle_id": bundle, "metrics": {"test": {"roc_auc": 0.95}},
        "lineage": {"data_fingerprint": {"last_event": "2026-01-20 23:00:00"}}}))
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create schema monitoring; create table monitoring.monitoring_daily_feature_drift "
                    "(day date, feature_name varchar, psi double)")
        con.execute("insert into monitoring.monitoring_daily_feature_drift values "
                    "('2026-01-19', 'log_amount', 0.9), ('2026-01-21', 'log_amount', 0.31), ('2026-01-21', 'hour_of_day', 0.02)")
    cfg = PipelineConfig(root=tmp_path, paths=Paths(warehouse=tmp_path / "w.duckdb", artifacts=tmp_path / "artifacts"))
    spec = FeatureSpec(model="fct_transaction_features", relation="features.fct_transaction_features",
                       key="transaction_id", timestamp="event_at", label="is_fraud", features=("log_amount",))
    measured = measure(cfg, spec)
    # Only days after the champion's data count: 2026-01-19's 0.9 was in its training data.
    assert measured.drift_psi == {"log_amount": 0.31, "hour_of_day": 0.02}
    assert measured.drift_day["log_amount"] == "landed features, 7 days to 2026-01-21"
    fired = decide(dataclasses.replace(measured, new_labelled_rows=500),
                   Monitoring(important_features=("log_amount",), min_new_labelled_rows=10_000))
    assert fired.fire and fired.reasons[0].startswith("drift: log_amount PSI 0.310")
