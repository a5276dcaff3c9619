"""A second dataset with another schema, label, task (regression) and two entities (a courier,
keyed by an integer, and a restaurant, keyed by text), adapted with dbt files and config only: the
whole DAG runs through to served predictions, and a new day served live, one record at a time, is
scored on exactly the features the warehouse computes point in time once that day has landed."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from serving import Predictor
from serving.bundle import load_bundle
from serving.predictor import ModelScorer
from serving.prediction_log import logged_predictions
from serving.registry import read_champion, resolve_bundle_path
from examples.delivery.generate import COURIERS, FIRST_DAY, deliveries, generate, land
from orchestration.monitoring.template import copy_monitoring, project_vars
from tests.conftest import run_orchestrator
from tests.e2e.serverproc import start_server
from training.dbt_manifest import feature_spec, load_manifest

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "delivery"
DAYS = 12
NEW_COURIER = 7_000_001
"""A courier first seen in the live day: empty state, then state only the server's writes hold."""
NEW_RESTAURANT = "r-opened-today"
TOLERANCE = 1e-5


@dataclass(frozen=True)
class ByodRun:
    root: Path
    config: Path
    stdout: str

    @property
    def registry(self) -> Path:
        return self.root / "artifacts" / "registry"


@pytest.fixture(scope="module")
def byod_run(tmp_path_factory: pytest.TempPathFactory) -> ByodRun:
    """The BYOD project and 12 seeded days of deliveries, through ``orchestrate.py`` once."""
    root = tmp_path_factory.mktemp("byod")
    shutil.copytree(EXAMPLE / "dbt_project", root / "dbt_project")
    # The monitoring models, copied as `init` copies them into a project it writes.
    copy_monitoring(root / "dbt_project")
    project = yaml.safe_load((root / "dbt_project" / "dbt_project.yml").read_text())
    project["vars"].update(project_vars("shop.deliveries", "fct_delivery_features", "regression", "duration_s"))
    (root / "dbt_project" / "dbt_project.yml").write_text(yaml.safe_dump(project))
    generate(root / "landing", days=DAYS, orders=250, seed=3)
    # The example's own config, pointed at this folder; the retrain policy held off, so one
    # champion serves the live day.
    cfg = yaml.safe_load((EXAMPLE / "pipeline.yml").read_text())
    cfg["paths"] = {"warehouse": "warehouse.duckdb", "landing": "landing", "artifacts": "artifacts"}
    cfg["monitoring"]["drift_psi_threshold"] = 1e9
    config = root / "pipeline.yml"
    config.write_text(yaml.safe_dump(cfg))
    result = run_orchestrator("--config", str(config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return ByodRun(root, config, result.stdout)


def test_regression_dataset_runs_end_to_end_to_a_served_prediction(byod_run: ByodRun, tmp_path: Path) -> None:
    assert "parity passed on 500 raw rows" in byod_run.stdout
    registry = byod_run.registry
    predictor = Predictor.load(registry, record=False)
    assert predictor.manifest.task == "regression"
    assert [f.name for f in predictor.manifest.input_schema] == [
        "order_ref", "placed_ts", "courier_id", "restaurant_ref", "distance_m", "item_count", "region_name", "raining"]
    assert predictor.manifest.metrics["test"]["r2"] > 0.5
    record = {"order_ref": "new", "placed_ts": "2026-05-20T18:30:00", "courier_id": 101, "restaurant_ref": "r03",
              "distance_m": 4000.0, "item_count": 3, "region_name": "City", "raining": True}
    try:
        local = predictor.predict([record]).to_records()[0]["prediction"]
    finally:
        predictor.close()
    assert 25 * 60 < local < 70 * 60  # about 10 + 16 + 6 + 8 + 6 minutes
    # A target in the thousands passes the fused gate: regression scores are compared relatively.
    assert predictor.manifest.fused is not None, predictor.manifest.fused_refused

    server = start_server("--registry", str(registry), "--prediction-logs", str(tmp_path / "logs"), "--no-record",
                          work=tmp_path / "server")
    try:
        served = httpx.post(f"{server.base}/predict", json=record)
        assert served.status_code == 200, served.text
        body = served.json()
        assert body["model_id"] == read_champion(registry)["bundle_id"] and body["prediction"] == local
        bad = httpx.post(f"{server.base}/predict", json={**record, "distance_m": "far"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "distance_m"
        bad = httpx.post(f"{server.base}/predict", json={**record, "courier_id": "c-101"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "courier_id"
    finally:
        server.stop()


def _live_day(day: dt.datetime) -> pa.Table:
    """The next day: the known couriers' deliveries, and four of a courier never seen before, from a
    restaurant never seen before."""
    known = deliveries(np.random.default_rng(11), day, 250, COURIERS, prefix="live")
    new = deliveries(np.random.default_rng(12), day, 4, np.array([NEW_COURIER]), prefix="first-courier",
                     restaurants=np.array([NEW_RESTAURANT]))
    return pa.concat_tables([known, new]).sort_by([("placed_ts", "ascending"), ("order_ref", "ascending")])


def _warehouse_features(run: ByodRun, keys: list[str]) -> tuple[list[str], np.ndarray]:
    """The features mart's point-in-time rows for ``keys``, in that order, as the model's float32 inputs."""
    spec = feature_spec(load_manifest(run.root / "artifacts" / "dbt" / "target" / "manifest.json"),
                        "fct_delivery_features")
    columns = ", ".join(f'm."{c}"' for c in spec.features)
    with duckdb.connect(str(run.root / "warehouse.duckdb"), read_only=True) as con:
        con.register("wanted", pa.table({"k": keys, "i": np.arange(len(keys))}))
        table = con.execute(f'select w.k, {columns} from wanted w join {spec.relation} m on m."{spec.key}" = w.k '
                            "order by w.i").fetch_arrow_table()
    assert table.column(0).to_pylist() == keys, "served deliveries missing from the features mart"
    matrix = np.column_stack([table.column(1 + j).to_numpy(zero_copy_only=False).astype(np.float64)
                              for j in range(len(spec.features))])
    return list(spec.features), matrix.astype(np.float32)


def test_a_live_day_is_served_as_the_warehouse_computes_it_point_in_time(byod_run: ByodRun, tmp_path: Path) -> None:
    """The live day through the real HTTP server one record at a time (each written through to
    the online store), then landed and run through the pipeline: every served feature vector and
    score equals the warehouse's point-in-time features for that delivery and the model on them."""
    bundle = load_bundle(resolve_bundle_path(byod_run.registry))
    types = {f.name: f.type for f in bundle.manifest.input_schema}
    assert sorted((e.name, e.key, types[e.key]) for e in bundle.manifest.entity_state) == [
        ("courier", "courier_id", "integer"), ("restaurant", "restaurant_ref", "string")]
    assert bundle.manifest.fused is not None, bundle.manifest.fused_refused
    assert {"entity_events__courier__distance_m", "entity_events__restaurant__placed_ts"} <= \
        set(bundle.manifest.fused["event_inputs"])

    day = FIRST_DAY + dt.timedelta(days=DAYS)
    table = _live_day(day)
    records = table.drop_columns(["duration_s", "dispatch_note"]).to_pylist()
    for r in records:
        r["placed_ts"] = r["placed_ts"].isoformat()
    store = byod_run.root / "artifacts" / "online_store"
    logs = byod_run.root / "artifacts" / "prediction_logs"  # where monitor reads them
    server = start_server("--registry", str(byod_run.registry), "--prediction-logs", str(logs),
                          "--store", f"embedded:{store}", work=tmp_path / "server")
    try:
        metadata = httpx.get(f"{server.base}/metadata").json()
        assert metadata["feature_path"] == "fused"
        assert sorted(e["key"] for e in metadata["entity_state"]) == ["courier_id", "restaurant_ref"]
        served: dict[str, float] = {}
        with httpx.Client(base_url=server.base, timeout=30) as http:
            for record in records:  # in event order, one per request, as live traffic
                answer = http.post("/predict", json=record)
                assert answer.status_code == 200, answer.text
                served[record["order_ref"]] = answer.json()["prediction"]
            metrics = http.get("/metrics").text
    finally:
        server.stop()
    # Each record is an event of both entities, written through for each.
    assert f'serving_state_events_total{{outcome="recorded"}} {2 * len(records)}' in metrics, metrics
    assert "serving_sql_fallback_rows_total 0" in metrics
    assert "Traceback" not in server.output()

    land(byod_run.root / "landing", day, table)
    result = run_orchestrator("--config", str(byod_run.config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert read_champion(byod_run.registry)["bundle_id"] == bundle.manifest.bundle_id  # one model served throughout

    logged = {p["inputs"]["order_ref"]: p for p in logged_predictions(sorted(logs.glob("*.jsonl")))}
    keys = [r["order_ref"] for r in records]
    assert sorted(logged) == sorted(keys)
    names, warehouse = _warehouse_features(byod_run, keys)
    used = np.array([[np.nan if v is None else v for v in logged[k]["features"]] for k in keys], dtype=np.float32)
    for j, name in enumerate(names):
        np.testing.assert_allclose(used[:, j], warehouse[:, j], rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True,
                                   err_msg=f"served {name} differs from the warehouse's point-in-time value")
    scores = np.array([served[k] for k in keys])
    np.testing.assert_allclose(scores, ModelScorer(bundle).scores(warehouse), rtol=TOLERANCE, atol=TOLERANCE)

    # The new courier (at a new restaurant): empty state first, then only what the server wrote through that day.
    state = {n: j for j, n in enumerate(names)}
    first = [i for i, r in enumerate(records) if r["courier_id"] == NEW_COURIER]
    assert used[first, state["courier_deliveries_7d"]].tolist() == [0, 1, 2, 3]
    assert np.isnan(used[first[0], state["minutes_since_courier_last_delivery"]])
    assert np.isnan(used[first[0], state["courier_avg_distance_km_7d"]])
    assert used[first[0], state["restaurant_orders_2h"]] == 0
    # A known courier's deliveries that day: each counts the earlier ones of that day, which only the
    # server's writes held when it was served (checked against a plain count over the landed files).
    landed = pq.read_table(byod_run.root / "landing" / "deliveries").select(["courier_id", "placed_ts"])
    busiest = int(max(COURIERS, key=lambda c: sum(r["courier_id"] == c for r in records)))
    times = np.array([t for c, t in zip(landed.column(0).to_pylist(), landed.column(1).to_pylist()) if c == busiest])
    mine = [i for i, r in enumerate(records) if r["courier_id"] == busiest]
    at = [dt.datetime.fromisoformat(records[i]["placed_ts"]) for i in mine]
    week = dt.timedelta(days=7)
    counts = used[mine, state["courier_deliveries_7d"]]
    assert counts.tolist() == [int(((times >= t - week) & (times < t)).sum()) for t in at]
    before_the_day = int(((times >= at[-1] - week) & (times < day)).sum())
    assert len(mine) >= 3 and counts[-1] == before_the_day + len(mine) - 1

    # Monitoring, written for no dataset in particular, watched this one: the served day's inputs,
    # features, scores and (regression) errors, and the replay of every logged record.
    assert f"online/offline consistency: {len(records) * len(names)} served feature values equal" in result.stdout
    audit = next(line for line in result.stdout.splitlines() if "replay audit of" in line)
    assert audit.endswith(f"replay audit of {len(records)} logged predictions (0 not landed yet): served inputs equal "
                          "the landed records and every score replays exactly"), audit
    with duckdb.connect(str(byod_run.root / "warehouse.duckdb"), read_only=True) as con:
        performance = con.execute("select count_labelled, mae, rmse from monitoring.monitoring_daily_performance "
                                  "where day = ?", [day.date()]).fetchone()
        drifted = {r[0] for r in con.execute("select column_name from monitoring.monitoring_daily_drift "
                                             "where data_source = 'served' and day = ?", [day.date()]).fetchall()}
        malformed = con.execute("select sum(count_malformed) from monitoring.monitoring_log_quality").fetchone()[0]
    assert performance[0] == len(records) and 0 < performance[1] <= performance[2]
    assert drifted == {"courier_id", "distance_m", "item_count", "region_name", "raining", "restaurant_ref"}
    assert malformed == 0
