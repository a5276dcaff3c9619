"""The HTTP server, started with its documented command, on loopback."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.prediction_log import logged_predictions
from serving.registry import read_champion
from tests.conftest import PipelineRun
from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def server(champion_server: ServerProcess) -> str:
    return champion_server.base


def test_health_ready_and_metadata(server: str, pipeline_run: PipelineRun) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "alive"}
    champion = read_champion(pipeline_run.registry)["bundle_id"]
    assert httpx.get(f"{server}/ready").json()["model_id"] == champion
    meta = httpx.get(f"{server}/metadata").json()
    assert meta["model_id"] == champion and "log_amount" in meta["features"]
    assert {"name": "amount", "type": "double", "nullable": False} in meta["input_schema"]
    assert meta["metrics"]["test"]["roc_auc"] > 0.5 and "gates" in meta
    spec = httpx.get(f"{server}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = body["oneOf"][0]
    # The request schema is the bundle's input schema.
    assert record["properties"]["amount"] == {"type": "number"}
    assert record["properties"]["device_type"] == {"type": ["string", "null"]}
    assert record["additionalProperties"] is False and len(record["required"]) == len(meta["input_schema"])
    assert httpx.get(f"{server}/docs").status_code == 200


def test_predict_one_record_and_a_batch(server: str, raw_records: list[dict]) -> None:
    one = httpx.post(f"{server}/predict", json=raw_records[0], headers={"x-request-id": "req-42"})
    assert one.status_code == 200, one.text
    assert 0 <= one.json()["score"] <= 1 and one.json()["label"] in (0, 1)
    assert one.json()["request_id"] == one.headers["x-request-id"] == "req-42"
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
    r = httpx.post(f"{server}/predict", json={"records": []})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "records"
    assert httpx.post(f"{server}/predict", json={"records": [raw_records[0]], "extra": 1}).status_code == 422
    assert httpx.post(f"{server}/predict", content=b"{not json").status_code == 400
    assert httpx.post(f"{server}/predict", content=b"[" * 200_000).status_code == 400  # nesting past the recursion limit
    assert httpx.post(f"{server}/predict", content=b'{"a": ' + b"9" * 5000 + b"}").status_code == 400  # int too long
    tricky = {**raw_records[0], "merchant_category": "\ud800", "txn_ts": "0001-01-01T00:00:00+05:00", "amount": 10**400}
    r = httpx.post(f"{server}/predict", content=json.dumps(tricky).encode())
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} == {"merchant_category", "txn_ts", "amount"}


def test_limits_are_413(server: str, raw_records: list[dict]) -> None:
    body = json.dumps({"records": raw_records * 30}).encode()  # > 1 MiB
    assert len(body) > 1 << 20

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(f"{server}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413  # counted while streaming: chunked upload, no Content-Length
    many = json.dumps({"records": [{}] * 10_001}).encode()
    assert len(many) < 1 << 20
    assert httpx.post(f"{server}/predict", content=many).status_code == 413


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_metrics_in_prometheus_text_format(server: str, raw_records: list[dict]) -> None:
    httpx.post(f"{server}/predict", json=raw_records[1])
    httpx.post(f"{server}/predict", content=b"nope")
    httpx.get(f"{server}/nowhere")
    r = httpx.get(f"{server}/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for line in text.splitlines():  # every sample line is `name{labels} value`
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2 and float(line.rsplit(" ", 1)[1]) >= 0
    assert _metric(text, 'serving_requests_total{route="/predict",method="POST",status="200"}') >= 1
    assert _metric(text, 'serving_request_duration_seconds_count{route="/predict"}') >= 2
    assert 'serving_request_duration_seconds_bucket{route="/predict",le="+Inf"}' in text
    assert _metric(text, 'serving_errors_total{kind="invalid_json"}') >= 1
    assert _metric(text, 'serving_errors_total{kind="not_found"}') >= 1
    assert _metric(text, 'serving_errors_total{kind="internal"}') == 0
    assert _metric(text, "serving_predictions_total") >= 1
    champion = httpx.get(f"{server}/ready").json()["model_id"]
    assert f'serving_model_info{{model_id="{champion}"}} 1' in text
    # Entity state: what writing scored records into the online store did, and rows the fused
    # graph left to the SQL path, are counted; the metadata names the store and the entity.
    assert _metric(text, 'serving_state_events_total{outcome="recorded"}') + \
        _metric(text, 'serving_state_events_total{outcome="duplicate"}') >= 1
    assert 'serving_sql_fallback_rows_total' in text
    meta = httpx.get(f"{server}/metadata").json()
    assert meta["feature_path"] == "fused" and meta["online_store"].startswith("embedded:")
    assert [e["name"] for e in meta["entity_state"]] == ["user"]


def test_every_answered_prediction_is_logged(champion_server: ServerProcess, raw_records: list[dict]) -> None:
    r = httpx.post(f"{champion_server.base}/predict", json={"records": raw_records[:3]}, headers={"x-request-id": "logged-1"})
    logs = Path(champion_server.log_path.parent / "logs")
    mine = [p for p in logged_predictions(sorted(logs.glob("*.jsonl"))) if p["request_id"] == "logged-1"]
    assert [m["record_index"] for m in mine] == [0, 1, 2]
    assert [m["score"] for m in mine] == [p["score"] for p in r.json()["predictions"]]
    assert mine[0]["inputs"] == raw_records[0] and mine[0]["model_id"] == r.json()["model_id"]
