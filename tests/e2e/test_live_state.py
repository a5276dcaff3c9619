"""Live entity state, from outside: what the server scores is what the warehouse computes for the
same event (live traffic, both stores, two workers), nothing acknowledged is lost to SIGKILL, and
a store that is down is a 503, never a score on empty state."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving.bundle import load_bundle
from serving.predictor import Predictor
from serving.registry import resolve_bundle_path
from serving.store import open_store
from tests.conftest import REPO, PipelineRun
from tests.e2e.serverproc import free_port, start_server

pytestmark = pytest.mark.slow


def _live(run: PipelineRun, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "live.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "live_state.py"), "--config", str(run.config),
                             "--work", str(tmp_path / "work"), "--out", str(out), *args],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def _assert_served_is_point_in_time(figures: dict) -> None:
    assert figures["days"], figures
    for day in figures["days"]:
        assert day["served"] > 500 and day["models"] == 1, day  # one champion served the whole day
        assert day["equal_share"] >= 0.999, day
        if day["served_roc_auc"] is not None:
            assert abs(day["served_roc_auc"] - day["point_in_time_roc_auc"]) <= 0.002, day


def test_live_traffic_through_two_workers_is_scored_as_the_warehouse_computes_it(pipeline_run: PipelineRun,
                                                                                tmp_path: Path) -> None:
    """The issue's experiment at small scale: new days through the HTTP server one record at a
    time, each landed after it was served; served scores against the bundle's model on the
    warehouse's point-in-time features for the same transactions."""
    _assert_served_is_point_in_time(_live(pipeline_run, tmp_path, "--days", "2", "--workers", "2"))


def test_live_traffic_with_the_redis_store(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _assert_served_is_point_in_time(_live(pipeline_run, tmp_path, "--days", "1", "--store", "redis"))


def test_sigkill_loses_no_acknowledged_event_and_a_restart_reads_the_same_state(
        pipeline_run: PipelineRun, raw_records: list[dict], tmp_path: Path) -> None:
    store_dir = shutil.copytree(pipeline_run.root / "artifacts" / "online_store", tmp_path / "store")
    args = ("--registry", str(pipeline_run.registry), "--prediction-logs", str(tmp_path / "logs"),
            "--store", f"embedded:{store_dir}")
    server = start_server(*args, work=tmp_path / "first")
    last = dt.datetime.fromisoformat(max(r["txn_ts"] for r in raw_records))
    acknowledged: list[dict] = []

    def client() -> None:
        with httpx.Client(base_url=server.base, timeout=5) as http:
            for i in range(3_000):  # bounded: the kill ends it long before
                record = {**raw_records[i % 20], "txn_id": f"kill-{i}",
                          "txn_ts": (last + dt.timedelta(seconds=i)).isoformat()}
                try:
                    r = http.post("/predict", json=record)
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acknowledged.append(record)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acknowledged) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        server.stop()
        thread.join(timeout=30)
    assert len(acknowledged) >= 100
    bundle = load_bundle(resolve_bundle_path(pipeline_run.registry))
    (spec,) = bundle.manifest.entity_state
    store = open_store(f"embedded:{store_dir}")
    try:
        held = store.read(spec, sorted({r["user_id"] for r in acknowledged}))
        stored = {str(k) for events in held.values() for k in events.keys}
    finally:
        store.close()
    assert {r["txn_id"] for r in acknowledged} <= stored, sorted({r["txn_id"] for r in acknowledged} - stored)[:5]

    # A restarted server reads that state: a next event of each user is scored with it, exactly
    # as an in-process Predictor on the same store computes it.
    restarted = start_server(*args, "--no-record", work=tmp_path / "second")
    try:
        probe = [{**acknowledged[-1], "txn_id": f"probe-{i}", "user_id": r["user_id"],
                  "txn_ts": (last + dt.timedelta(hours=2)).isoformat()} for i, r in enumerate(acknowledged[:20])]
        served = httpx.post(f"{restarted.base}/predict", json={"records": probe}).json()["predictions"]
    finally:
        restarted.stop()
    local = Predictor(bundle, store=f"embedded:{store_dir}", record=False)
    try:
        expected = local.predict(probe).scores
    finally:
        local.close()
    assert [p["score"] for p in served] == pytest.approx(list(expected), abs=1e-7)


def test_an_unreachable_store_fails_readiness_and_every_prediction_is_a_503(pipeline_run: PipelineRun,
                                                                            raw_records: list[dict],
                                                                            tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    port = free_port()
    (tmp_path / "work").mkdir()
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "serving", "--registry", str(pipeline_run.registry),
                                 "--prediction-logs", str(tmp_path / "logs"), "--store", dead,
                                 "--no-auth", "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                cwd=tmp_path / "work")
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 503 and "unreachable" in ready.json()["error"], ready.text
        answer = httpx.post(f"{base}/predict", json=raw_records[0])
        assert answer.status_code == 503, answer.text
        assert "entity state cannot be read" in answer.json()["error"] and "score" not in answer.json()
        assert "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_an_unknown_entity_is_scored_as_a_new_user(pipeline_run: PipelineRun, raw_records: list[dict]) -> None:
    predictor = Predictor.load(pipeline_run.registry, record=False)
    try:
        record = {**raw_records[0], "user_id": "never_seen_before", "txn_id": "new-user-1"}
        features = dict(zip(predictor.manifest.feature_names, predictor.predict(record).features[0]))
    finally:
        predictor.close()
    assert features["user_txn_count_24h"] == 0 and features["is_new_country_for_user"] == 1
    assert features["seconds_since_last_txn"] != features["seconds_since_last_txn"]  # NaN: no earlier event
