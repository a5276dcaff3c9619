"""API keys and scopes on the real server (127.0.0.1): every route without a key, with an unknown
key, with the wrong scope and with the right one; a score-only key cannot change any entity's
state; a key file rotated under a running server, with no failed request from a valid key."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.auth.cli import main as auth_cli
from serving.prediction_log import logged_predictions
from tests.conftest import PipelineRun
from tests.e2e.serverproc import ServerProcess, bearer, issue_keys, start_server

pytestmark = pytest.mark.slow
SCOPES = {"reader": "score", "writer": "score+record", "ops": "admin"}


def _args(run: PipelineRun, work: Path, keys: Path | None) -> list[str]:
    store = shutil.copytree(run.root / "artifacts" / "online_store", work / "online_store")
    auth = ["--api-keys", str(keys), "--api-keys-interval", "0.2"] if keys else ["--no-auth"]
    return ["--registry", str(run.registry), "--prediction-logs", str(work / "logs"), "--store", f"embedded:{store}", *auth]


@pytest.fixture(scope="module")
def keyed(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    work = tmp_path_factory.mktemp("auth")
    keys = issue_keys(work / "keys.json", SCOPES)
    server = start_server(*_args(pipeline_run, work, work / "keys.json"), work=work)
    yield server, keys
    server.stop()


def _call(base: str, method: str, path: str, key: str | None, record: dict) -> httpx.Response:
    headers = bearer(key) if key else {}
    if method == "POST":
        return httpx.post(f"{base}{path}", json=record, headers=headers, timeout=10)
    return httpx.get(f"{base}{path}", headers=headers, timeout=10)


ROUTES = [("POST", "/predict", "writer", "ops", "score+record or score"),
          ("GET", "/metadata", "ops", "writer", "admin"),
          ("GET", "/metrics", "ops", "reader", "admin")]


@pytest.mark.parametrize(("method", "path", "right", "wrong", "needed"), ROUTES)
def test_a_route_without_key_with_unknown_key_wrong_scope_and_right_scope(
        keyed: tuple[ServerProcess, dict[str, str]], raw_records: list[dict],
        method: str, path: str, right: str, wrong: str, needed: str) -> None:
    server, keys = keyed
    for key, status, reason in ((None, 401, "missing_key"), ("sk_not_a_key", 401, "unknown_key"),
                                (keys[wrong], 403, "wrong_scope")):
        r = _call(server.base, method, path, key, raw_records[0])
        assert r.status_code == status, r.text
        body = r.json()
        assert body["reason"] == reason and needed in body["error"], body
        assert body["required_scopes"] == needed.split(" or "), body
        assert (r.headers.get("www-authenticate", "") != "") == (status == 401)
    assert _call(server.base, method, path, keys[right], raw_records[0]).status_code == 200


def test_probes_are_open_and_the_api_document_needs_any_key(keyed: tuple[ServerProcess, dict[str, str]]) -> None:
    server, keys = keyed
    assert httpx.get(f"{server.base}/health").status_code == 200
    assert httpx.get(f"{server.base}/ready").status_code == 200
    for path in ("/openapi.json", "/docs"):
        assert httpx.get(f"{server.base}{path}").status_code == 401
        assert httpx.get(f"{server.base}{path}", headers=bearer(keys["reader"])).status_code == 200
    assert httpx.get(f"{server.base}/nowhere").status_code == 401  # no route map for anonymous callers
    assert httpx.get(f"{server.base}/nowhere", headers=bearer(keys["reader"])).status_code == 404


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_refusals_are_counted_by_reason_and_the_log_holds_key_ids_never_keys(
        keyed: tuple[ServerProcess, dict[str, str]], raw_records: list[dict]) -> None:
    server, keys = keyed
    before = httpx.get(f"{server.base}/metrics", headers=bearer(keys["ops"])).text
    httpx.post(f"{server.base}/predict", json=raw_records[0])
    httpx.post(f"{server.base}/predict", json=raw_records[0], headers=bearer("sk_wrong"))
    httpx.get(f"{server.base}/metadata", headers=bearer(keys["reader"]))
    after = httpx.get(f"{server.base}/metrics", headers=bearer(keys["ops"])).text
    for reason in ("missing_key", "unknown_key", "wrong_scope"):
        name = f'serving_auth_failures_total{{reason="{reason}"}}'
        assert _metric(after, name) == _metric(before, name) + 1, reason
    r = httpx.post(f"{server.base}/predict", json=raw_records[1], headers={**bearer(keys["reader"]), "x-request-id": "by-reader"})
    assert r.status_code == 200
    time.sleep(1.5)  # the prediction log's fsync interval
    logs = sorted((server.log_path.parent / "logs").glob("*.jsonl"))
    assert [p["key_id"] for p in logged_predictions(logs) if p["request_id"] == "by-reader"] == ["reader"]
    everything = "".join(p.read_text() for p in logs) + server.output()
    assert not any(key in everything for key in keys.values())


def _poison(user: str, last: dt.datetime, template: dict, tag: str) -> list[dict]:
    """Invented transactions under ``user``: a burst of new countries in the last hour."""
    countries = ["NG", "RU", "BR", "VN", "KP", "IR", "PK", "UA"]
    return [{**template, "user_id": user, "txn_id": f"{tag}-{i}", "country_code": countries[i % len(countries)],
             "amount": 999.0, "txn_ts": (last + dt.timedelta(minutes=i)).isoformat()} for i in range(30)]


def test_a_score_only_key_cannot_change_an_entitys_state(keyed: tuple[ServerProcess, dict[str, str]],
                                                         raw_records: list[dict]) -> None:
    server, keys = keyed
    last = dt.datetime.fromisoformat(max(r["txn_ts"] for r in raw_records))
    target, control = raw_records[0]["user_id"], next(r["user_id"] for r in raw_records if r["user_id"] != raw_records[0]["user_id"])

    probes = iter(range(1_000))

    def probe(user: str) -> tuple[float, list]:
        """The score and the logged feature vector of the user's next (unrecorded) transaction."""
        record = {**raw_records[0], "user_id": user, "txn_id": f"probe-{user}", "txn_ts": (last + dt.timedelta(hours=1)).isoformat()}
        request_id = f"probe-{next(probes)}"
        r = httpx.post(f"{server.base}/predict", json=record, headers={**bearer(keys["reader"]), "x-request-id": request_id})
        assert r.status_code == 200, r.text
        logs = sorted((server.log_path.parent / "logs").glob("*.jsonl"))
        (features,) = [p["features"] for p in logged_predictions(logs) if p["request_id"] == request_id]
        return r.json()["score"], features

    def recorded() -> float:
        text = httpx.get(f"{server.base}/metrics", headers=bearer(keys["ops"])).text
        return _metric(text, 'serving_state_events_total{outcome="recorded"}')

    before, recorded_before = probe(target), recorded()
    poisoned = httpx.post(f"{server.base}/predict", json={"records": _poison(target, last, raw_records[0], "poison")},
                          headers=bearer(keys["reader"]))
    assert poisoned.status_code == 200  # scored, as the scope allows, and nothing written
    for event in _poison(target, last, raw_records[0], "poison-one")[:10]:
        assert httpx.post(f"{server.base}/predict", json=event, headers=bearer(keys["reader"])).status_code == 200
    assert probe(target) == before
    assert recorded() == recorded_before
    # The same attempt with the record scope does change state: the probe's features would have shown it.
    control_before = probe(control)
    written = httpx.post(f"{server.base}/predict", json={"records": _poison(control, last, raw_records[0], "control")},
                         headers=bearer(keys["writer"]))
    assert written.status_code == 200
    assert recorded() == recorded_before + 30
    assert probe(control)[1] != control_before[1]


def test_a_rotated_key_file_takes_effect_without_a_restart_or_a_failed_request(
        pipeline_run: PipelineRun, raw_records: list[dict], tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    current = issue_keys(path, {"ci": "score"})["ci"]
    server = start_server(*_args(pipeline_run, tmp_path, path), work=tmp_path)
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            i = 0
            while not stop.is_set():
                r = http.post("/predict", json=raw_records[i % len(raw_records)], headers=bearer(current))
                statuses[r.status_code] += 1
                i += 1

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(1)
        fresh = issue_keys(path, {"ci-2": "score"})["ci-2"]  # 1. issue the new key beside the old
        started = time.monotonic()
        while httpx.post(f"{server.base}/predict", json=raw_records[0], headers=bearer(fresh)).status_code != 200:
            assert time.monotonic() - started < 5, "the new key was not accepted within 5 s (interval 0.2 s)"
            time.sleep(0.05)
        accepted_after = time.monotonic() - started
        current = fresh  # 2. move the client to it
        time.sleep(0.5)
        assert auth_cli(["revoke", "--file", str(path), "--id", "ci"]) == 0  # 3. revoke the old one
        time.sleep(1)
    finally:
        stop.set()
        thread.join(timeout=30)
    try:
        assert statuses[200] > 50 and set(statuses) == {200}, statuses
        assert accepted_after < 2, accepted_after
        reloaded = server.output()
        assert "API keys: reloaded" in reloaded and current not in reloaded
    finally:
        server.stop()


def test_revoked_key_is_refused_within_the_interval(pipeline_run: PipelineRun, raw_records: list[dict],
                                                    tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys = issue_keys(path, {"old": "score", "new": "score"})
    server = start_server(*_args(pipeline_run, tmp_path, path), work=tmp_path)
    try:
        assert httpx.post(f"{server.base}/predict", json=raw_records[0], headers=bearer(keys["old"])).status_code == 200
        assert auth_cli(["revoke", "--file", str(path), "--id", "old"]) == 0
        started = time.monotonic()
        while httpx.post(f"{server.base}/predict", json=raw_records[0], headers=bearer(keys["old"])).status_code != 401:
            assert time.monotonic() - started < 5, "the revoked key was still accepted after 5 s (interval 0.2 s)"
            time.sleep(0.05)
        assert httpx.post(f"{server.base}/predict", json=raw_records[0], headers=bearer(keys["new"])).status_code == 200
        path.write_text("{not json")  # a broken edit keeps the keys in force
        time.sleep(0.6)
        assert httpx.post(f"{server.base}/predict", json=raw_records[0], headers=bearer(keys["new"])).status_code == 200
        assert "refused the changed file" in server.output()
    finally:
        server.stop()


def test_keys_are_required_by_default_and_no_auth_warns(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "serving", "--registry", str(pipeline_run.registry)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "keys are required: pass --api-keys FILE" in done.stderr
    (tmp_path / "bad.json").write_text('{"format_version": 1, "keys": {"ci": {"sha256": "sk_x", "scopes": ["score"]}}}')
    done = subprocess.run([sys.executable, "-m", "serving", "--registry", str(pipeline_run.registry),
                           "--api-keys", str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "field 'keys.ci.sha256': expected 64 lowercase hex digits" in done.stderr
    server = start_server(*_args(pipeline_run, tmp_path, None), work=tmp_path)
    try:
        assert "--no-auth: every request is served without an API key" in server.output()
        assert httpx.get(f"{server.base}/metadata").status_code == 200
    finally:
        server.stop()
