"""The HTTP server, started with its documented command, on loopback."""

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.registry import read_champion
from tests.conftest import PipelineRun

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(registry: Path) -> Iterator[str]:
    """The documented server command on a free loopback port; yields its base URL once ready."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving", "--registry", str(registry), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()}")
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server not ready within 60 s")
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(pipeline_run: PipelineRun) -> Iterator[str]:
    with running_server(pipeline_run.registry) as base:
        yield base


def test_health_ready_and_metadata(server: str, pipeline_run: PipelineRun) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "alive"}
    champion = read_champion(pipeline_run.registry)["bundle_id"]
    assert httpx.get(f"{server}/ready").json()["model_id"] == champion
    meta = httpx.get(f"{server}/metadata").json()
    assert meta["model_id"] == champion and "log_amount" in meta["features"]
    assert httpx.get(f"{server}/openapi.json").status_code == 200


def test_predict_one_record_and_a_batch(server: str, raw_records: list[dict]) -> None:
    one = httpx.post(f"{server}/predict", json=raw_records[0])
    assert one.status_code == 200, one.text
    assert 0 <= one.json()["score"] <= 1 and one.json()["label"] in (0, 1)
    batch = httpx.post(f"{server}/predict", json={"records": raw_records[:50]})
    assert batch.status_code == 200
    predictions = batch.json()["predictions"]
    assert len(predictions) == 50
    assert predictions[0]["score"] == pytest.approx(one.json()["score"], abs=0)


def test_bad_input_is_a_4xx_naming_record_and_field(server: str, raw_records: list[dict]) -> None:
    missing = {k: v for k, v in raw_records[0].items() if k != "amount"}
    r = httpx.post(f"{server}/predict", json={"records": [raw_records[0], missing]})
    assert r.status_code == 422
    assert {"record": 1, "field": "amount", "problem": "is missing"} in r.json()["problems"]
    r = httpx.post(f"{server}/predict", json={**raw_records[0], "amount": "12.00"})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "amount"
    assert httpx.post(f"{server}/predict", json={"records": []}).status_code == 422
    assert httpx.post(f"{server}/predict", content=b"{not json").status_code == 400


def test_oversized_body_is_413_even_without_content_length(server: str, raw_records: list[dict]) -> None:
    body = json.dumps({"records": raw_records * 30}).encode()  # > 1 MiB
    assert len(body) > 1 << 20

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(f"{server}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
