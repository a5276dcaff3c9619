"""``serve-model --workers 2``: two processes on one port, their logs and their summed metrics."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serving.prediction_log import logged_predictions
from serving.registry import promote
from tests.conftest import PipelineRun, derive_bundle
from tests.e2e.serverproc import start_server

pytestmark = pytest.mark.slow


def _metric(text: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


@pytest.mark.parametrize("scoring_threads", ["2", "0"])  # 0: each worker scores in its event loop
def test_two_workers_answer_log_and_count_together(pipeline_run: PipelineRun, raw_records: list[dict],
                                                    tmp_path: Path, scoring_threads: str) -> None:
    server = start_server("--registry", str(pipeline_run.registry), "--prediction-logs", str(tmp_path / "logs"),
                          "--workers", "2", "--scoring-threads", scoring_threads, work=tmp_path)
    try:
        # /ready answers from whichever worker takes the connection; wait until both have published.
        deadline = time.monotonic() + 60
        while _metric(httpx.get(f"{server.base}/metrics").text, "serving_workers") < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)

        def send(k: int) -> list[float]:
            with httpx.Client(base_url=server.base) as client:  # a connection of its own: either worker takes it
                r = client.post("/predict", json={"records": raw_records[k * 5:(k + 1) * 5]})
                assert r.status_code == 200, r.text
                return [p["score"] for p in r.json()["predictions"]]

        with ThreadPoolExecutor(8) as pool:
            scores = [s for batch in pool.map(send, range(16)) for s in batch]
        assert len(scores) == 80
        deadline, text = time.monotonic() + 15, ""
        while time.monotonic() < deadline:  # the other worker's counts arrive within half a second
            text = httpx.get(f"{server.base}/metrics").text
            if _metric(text, "serving_predictions_total") == 80:
                break
            time.sleep(0.2)
        assert _metric(text, "serving_predictions_total") == 80, text
        assert _metric(text, "serving_workers") == 2
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.output()
    files = sorted((tmp_path / "logs").glob("*.jsonl"))
    assert sorted(p["score"] for p in logged_predictions(files)) == sorted(scores)
    assert len({f.name.split("-")[2] for f in files}) == 2  # each worker opens files of its own, named by its pid


def test_workers_refuse_a_bad_bundle_before_starting(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "serving", "--bundle", str(tmp_path / "missing"), "--workers", "2",
                           "--no-auth", "--host", "127.0.0.1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "serve-model: cannot load the model" in done.stderr


def test_every_worker_swaps_in_a_new_champion(registry_copy: Path, raw_records: list[dict], tmp_path: Path) -> None:
    second = derive_bundle(registry_copy, threshold=0.0123)
    server = start_server("--registry", str(registry_copy), "--reload-interval", "0.2", "--workers", "2",
                          "--prediction-logs", str(tmp_path / "logs"), work=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while _metric(httpx.get(f"{server.base}/metrics").text, "serving_workers") < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        promote(registry_copy, second, by="test", reason="two workers")
        deadline, text = time.monotonic() + 20, ""
        while time.monotonic() < deadline:  # the swaps of both workers, summed
            text = httpx.get(f"{server.base}/metrics").text
            if _metric(text, 'serving_model_reloads_total{outcome="swapped"}') == 2:
                break
            time.sleep(0.2)
        assert _metric(text, 'serving_model_reloads_total{outcome="swapped"}') == 2, text

        def model_of(k: int) -> str:
            with httpx.Client(base_url=server.base) as client:  # a connection of its own: either worker
                return client.post("/predict", json=raw_records[k]).json()["model_id"]

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(model_of, range(32))) == {second}
    finally:
        server.stop()
