"""Hot reload under load, refusal of bad champions, and prediction logs that survive SIGKILL."""

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving.bundle import InputField
from serving.prediction_log import logged_predictions
from serving.registry import bundles_dir, promote
from tests.conftest import derive_bundle
from tests.e2e.serverproc import LoadResult, run_load, start_server

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _metric(base: str, sample: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_swap_under_load_fails_no_request_and_bad_champions_are_refused(
        registry_copy: Path, raw_records: list[dict], tmp_path: Path) -> None:
    first = json.loads((registry_copy / "champion.json").read_text())["bundle_id"]
    second = derive_bundle(registry_copy, threshold=0.0123)
    server = start_server("--registry", str(registry_copy), "--reload-interval", "0.2",
                          "--prediction-logs", str(tmp_path / "logs"), work=tmp_path)
    try:
        result: list[LoadResult] = []
        load = threading.Thread(target=lambda: result.append(run_load(
            server.port, raw_records, clients=8, max_requests=50_000, max_seconds=8, collect_model_ids=True)))
        load.start()
        time.sleep(2)
        promote(registry_copy, second, by="test", reason="swap under load")
        assert _wait_for(lambda: httpx.get(f"{server.base}/ready").json()["model_id"] == second, 20)
        load.join(timeout=60)
        (done,) = result
        assert done.transport_errors == [] and done.failures == 0, (done.statuses, done.transport_errors[:3])
        assert done.model_ids[first] > 0 and done.model_ids[second] > 0  # served by both, none failed
        assert _metric(server.base, 'serving_model_reloads_total{outcome="swapped"}') == 1

        # A corrupt champion (contents no longer match its id) is refused; the old model keeps serving.
        corrupt = derive_bundle(registry_copy, threshold=0.0456)
        (bundles_dir(registry_copy) / corrupt / "serving.sql").write_text("select 1 as x")
        promote(registry_copy, corrupt, by="test", reason="corrupt")
        assert _wait_for(lambda: _metric(server.base, 'serving_model_reloads_total{outcome="refused"}') == 1, 20)
        assert f'serving_model_last_refused_info{{bundle_id="{corrupt}"}} 1' in httpx.get(f"{server.base}/metrics").text
        # A bundle whose input schema differs from the served one is refused too.
        changed = tuple(InputField(f.name, f.type, False) for f in _served_schema(server.base))
        mismatched = derive_bundle(registry_copy, second, input_schema=changed)
        promote(registry_copy, mismatched, by="test", reason="schema change")
        assert _wait_for(lambda: _metric(server.base, 'serving_model_reloads_total{outcome="refused"}') == 2, 20)
        r = httpx.post(f"{server.base}/predict", json=raw_records[0])
        assert r.status_code == 200 and r.json()["model_id"] == second
    finally:
        server.stop()
    log = server.output()
    assert f"refused champion {corrupt[:12]}" in log and "contents do not match bundle id" in log
    assert f"refused champion {mismatched[:12]}" in log and "input schema" in log


def _served_schema(base: str) -> list[InputField]:
    return [InputField(**f) for f in httpx.get(f"{base}/metadata").json()["input_schema"]]


def test_sigkill_loses_no_answered_prediction(pipeline_run, raw_records: list[dict], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    # fsync only every 60 s: what survives SIGKILL is what was written before the answer, not fsync.
    server = start_server("--registry", str(pipeline_run.registry), "--prediction-logs", str(logs),
                          "--fsync-interval", "60", work=tmp_path)
    answered: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=server.base, timeout=5) as http:
            for i in range(5_000):  # bounded: the kill ends it long before
                rid = f"kill-{i}"
                try:
                    r = http.post("/predict", json=raw_records[i % len(raw_records)], headers={"x-request-id": rid})
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    answered.append(rid)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert _wait_for(lambda: len(answered) >= 100, 30)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
    finally:
        server.stop()  # a no-op once killed; stops the server if the wait above failed
        thread.join(timeout=30)
    logged = {p["request_id"] for p in logged_predictions(sorted(logs.glob("*.jsonl")))}
    assert len(answered) >= 100
    assert set(answered) <= logged, sorted(set(answered) - logged)[:5]
