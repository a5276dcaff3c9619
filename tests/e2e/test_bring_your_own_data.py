"""A second dataset with another schema, label and task (regression), adapted with dbt files and
config only, runs the whole DAG through to a served prediction."""

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from serving import Predictor
from serving.registry import read_champion
from tests.conftest import run_orchestrator
from tests.e2e.serverproc import start_server

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _land_deliveries(landing: Path, days: int = 12, per_day: int = 250, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for day in range(days):
        n = per_day
        date = dt.datetime(2026, 5, 1) + dt.timedelta(days=day)
        distance = rng.gamma(2.0, 1500.0, n)
        items = rng.integers(1, 8, n)
        region = rng.choice(["North", " south", "CITY", "", None], n, p=[0.3, 0.3, 0.3, 0.05, 0.05])
        raining = rng.random(n) < 0.2
        hours = rng.integers(8, 23, n)
        duration = 10 + distance / 250 + 2 * items + 8 * raining + np.where(hours >= 17, 6, 0) + rng.normal(0, 3, n)
        table = pa.table({
            "order_ref": [f"o{day:02d}{i:04d}" for i in range(n)],
            "placed_ts": pa.array([date + dt.timedelta(hours=int(h), minutes=int(m)) for h, m in zip(hours, rng.integers(0, 60, n))],
                                  pa.timestamp("us")),
            "distance_m": distance,
            "item_count": items.astype(np.int64),
            "region_name": region.tolist(),
            "raining": raining,
            "duration_s": duration * 60,  # seconds: a target in the thousands
        })
        (landing / "deliveries").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, landing / "deliveries" / f"{date.date()}.parquet")


def test_regression_dataset_runs_end_to_end_to_a_served_prediction(tmp_path: Path) -> None:
    project = tmp_path / "dbt_project"
    shutil.copytree(HERE / "byod_dbt_project", project)
    _land_deliveries(tmp_path / "landing")
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump({
        "paths": {"warehouse": "warehouse.duckdb", "landing": "landing", "artifacts": "artifacts"},
        "demo_data": {"generate_if_empty": False},
        "dbt": {"project_dir": "dbt_project", "source": "shop.deliveries",
                "features_model": "fct_delivery_features", "serving_macro": "serving_delivery_features"},
        "task": "regression",
        "label": "duration_s",
        "model": {"family": "random_forest", "params": {"n_estimators": 30, "max_depth": 8}},
        "parity": {"rows": 500},
    }))
    result = run_orchestrator("--config", str(config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "parity passed on 500 raw rows" in result.stdout

    registry = tmp_path / "artifacts" / "registry"
    predictor = Predictor.load(registry)
    assert predictor.manifest.task == "regression"
    assert [f.name for f in predictor.manifest.input_schema] == [
        "order_ref", "placed_ts", "distance_m", "item_count", "region_name", "raining"]
    assert predictor.manifest.metrics["test"]["r2"] > 0.5
    record = {"order_ref": "new", "placed_ts": "2026-05-20T18:30:00", "distance_m": 4000.0, "item_count": 3,
              "region_name": "City", "raining": True}
    local = predictor.predict([record]).to_records()[0]["prediction"]
    assert 25 * 60 < local < 70 * 60  # about 10 + 16 + 6 + 8 + 6 minutes
    # A target in the thousands passes the fused gate: regression scores are compared relatively.
    assert predictor.manifest.fused is not None, predictor.manifest.fused_refused

    import httpx

    server = start_server("--registry", str(registry), "--prediction-logs", str(tmp_path / "logs"), work=tmp_path / "server")
    try:
        served = httpx.post(f"{server.base}/predict", json=record)
        assert served.status_code == 200, served.text
        body = served.json()
        assert body["model_id"] == read_champion(registry)["bundle_id"] and body["prediction"] == local
        bad = httpx.post(f"{server.base}/predict", json={**record, "distance_m": "far"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "distance_m"
    finally:
        server.stop()
