"""The dbt project on its own: `dbt build` with the committed profile, and the serving SQL."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from orchestration.demo_data import DemoDataOptions, generate

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_dbt_build_works_alone_with_the_committed_profile(tmp_path: Path) -> None:
    generate(tmp_path / "landing", DemoDataOptions(rows=3000, days=10, seed=2))
    env = {**os.environ, "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"), "LANDING_PATH": str(tmp_path / "landing"),
           "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")}
    dbt = Path(sys.executable).with_name("dbt")
    result = subprocess.run([str(dbt), "build"], cwd=REPO / "dbt_project", env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        staged = con.execute("select count(*) from staging.stg_bank__transactions").fetchone()[0]
        features = con.execute("select count(*) from features.fct_transaction_features").fetchone()[0]
        # Fitted stats see the first 70% of days only (7 of 10 days without vars).
        fitted = con.execute("select count_training_rows from features.fitted_transaction_stats").fetchone()[0]
        train_rows = con.execute(
            "select count(*) from staging.stg_bank__transactions where event_at < date '2026-01-08'"
        ).fetchone()[0]
    assert staged == features == 3000
    assert fitted == train_rows < staged
