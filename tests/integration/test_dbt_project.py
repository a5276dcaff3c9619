"""The dbt project on its own: `dbt build` with the committed profile, its checks, freshness and docs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from orchestration.demo_data import DemoDataOptions, generate

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _dbt(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"), "LANDING_PATH": str(tmp_path / "landing"),
           "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")}
    dbt = Path(sys.executable).with_name("dbt")
    return subprocess.run([str(dbt), *args], cwd=REPO / "dbt_project", env=env, capture_output=True, text=True)


def test_dbt_build_works_alone_with_the_committed_profile(tmp_path: Path) -> None:
    generate(tmp_path / "landing", DemoDataOptions(rows=3000, days=10, seed=2))
    result = _dbt(tmp_path, "build")
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        staged = con.execute("select count(*) from staging.stg_bank__transactions").fetchone()[0]
        features = con.execute("select count(*) from features.fct_transaction_features").fetchone()[0]
        # Fitted stats see the first 70% of days only (7 of 10 days without vars).
        fitted = con.execute("select count_training_rows from features.fitted_transaction_stats").fetchone()[0]
        train_rows = con.execute(
            "select count(*) from staging.stg_bank__transactions where event_at < date '2026-01-08'"
        ).fetchone()[0]
        # The baseline profile covers the same training window; standalone, tests compare with it.
        (baseline_rows,) = con.execute("select distinct count_training_rows from validation.baseline_transaction_profile").fetchone()
    assert staged == features == 3000
    assert fitted == train_rows == baseline_rows < staged
    ran = {r["unique_id"].split(".")[2].split("_stg_")[0] for r in
           json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]}
    assert {"null_fraction_vs_baseline", "mean_vs_baseline", "label_rate_within_bounds", "row_count_vs_trailing"} <= ran

    # Freshness against a settable clock: the demo's last event is late on 2026-01-10.
    fresh = _dbt(tmp_path, "source", "freshness", "--vars", "{freshness_as_of: '2026-01-11T00:00:00'}")
    stale = _dbt(tmp_path, "source", "freshness", "--vars", "{freshness_as_of: '2026-01-12T00:00:00'}")
    assert fresh.returncode == 0 and "PASS freshness of bank.transactions" in fresh.stdout, fresh.stdout[-2000:]
    assert stale.returncode == 1 and "ERROR STALE freshness of bank.transactions" in stale.stdout, stale.stdout[-2000:]

    # `dbt docs` shows each feature's availability date (column meta).
    docs = _dbt(tmp_path, "docs", "generate")
    assert docs.returncode == 0 and (tmp_path / "target" / "index.html").is_file(), docs.stdout[-2000:]
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    columns = manifest["nodes"]["model.card_fraud.fct_transaction_features"]["columns"]
    dates = {name: col["meta"].get("available_from") for name, col in columns.items() if col["meta"].get("role") == "feature"}
    assert dates and all(dates.values()), dates
