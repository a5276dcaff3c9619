"""Simulated days through the real server: drift triggers a retrain, a stable period does not,
and headless Chromium shows every section of the report. Both scenarios start from a copy of the
session's pipeline run (20k rows, 20 days) and play 2 days forward with labels 1 day late."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from orchestration.monitoring.report import SECTIONS
from tests.conftest import PipelineRun, run_orchestrator, write_config

pytestmark = pytest.mark.slow


def _simulate(pipeline_run: PipelineRun, root: Path, *drift: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    shutil.copy(pipeline_run.warehouse, root / "warehouse.duckdb")
    shutil.copytree(pipeline_run.landing, root / "landing")
    # The whole artifacts folder: registry, and the stage outputs that let unchanged stages skip.
    shutil.copytree(pipeline_run.root / "artifacts", root / "artifacts")
    config = write_config(root)
    args = ["simulate", "--config", str(config), "--days", "2", *[a for d in drift for a in ("--drift", d)]]
    return run_orchestrator(*args, timeout=400), root


def _champion(root: Path) -> str:
    return json.loads((root / "artifacts" / "registry" / "champion.json").read_text())["bundle_id"]


@pytest.fixture(scope="module")
def drifted(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    return _simulate(pipeline_run, tmp_path_factory.mktemp("drift"), "country-mix")


def test_simulated_drift_triggers_a_retrain(drifted: tuple[subprocess.CompletedProcess[str], Path],
                                            pipeline_run: PipelineRun) -> None:
    result, root = drifted
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        days = con.execute("select day, served_rows, landed_days, retrain_fired from monitoring.simulation_days "
                           "order by day").fetchall()
        decisions = con.execute("select fire, reasons from monitoring.retrain_decisions order by decided_at").fetchall()
        drift = con.execute("select max(psi) from monitoring.monitoring_daily_drift "
                            "where data_source = 'served' and column_name = 'country_code'").fetchone()[0]
        logged = con.execute("select count(*) from staging.stg_serving__predictions").fetchone()[0]
    assert len(days) == 2 and all(d[1] > 500 for d in days)
    assert days[0][3] is False and "waiting for labels" in decisions[-2][1][0]  # day 1: drift seen, labels not yet
    assert days[1][2] and days[1][3] is True  # day 2: day 1's labels landed, the policy fired
    assert decisions[-1][1][0].startswith("drift: country_code PSI")
    assert drift > 1.0 and logged == sum(d[1] for d in days)
    assert _champion(root) != _champion(pipeline_run.root)


def test_report_shows_every_section_in_chromium(drifted: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: scripts/test installs it (apt-get install -y chromium)")
    _, root = drifted
    report = root / "artifacts" / "report.html"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom, section
    assert "Drift of served inputs" in dom and "served country_code" in dom and "<polyline" in dom
    assert "drift: country_code PSI" in dom  # the retrain decision and its reason


def test_simulated_stable_period_does_not_retrain(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    result, root = _simulate(pipeline_run, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        fired = con.execute("select retrain_fired from monitoring.simulation_days order by day").fetchall()
        reasons = con.execute("select reasons from monitoring.retrain_decisions order by decided_at desc limit 1").fetchone()
    assert fired == [(False,), (False,)]
    assert reasons[0][0].startswith("no trigger:")
    assert _champion(root) == _champion(pipeline_run.root)
