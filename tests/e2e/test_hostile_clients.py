"""Clients that try to hold or crash the real server (127.0.0.1): deep nesting is a 400, headers
and bodies that do not arrive get 408 within their timeouts and the connection closed, and
connections past the cap get 503 with Retry-After. Raw sockets: httpx would not send half a body."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from serving.body import MAX_NESTING
from tests.conftest import PipelineRun
from tests.e2e.serverproc import LOOPBACK, ServerProcess, start_server

pytestmark = pytest.mark.slow
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 40
SLACK_S = 1.5
"""How late past a timeout the 408 may come on 2 busy cores."""


@pytest.fixture(scope="module")
def server(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("hostile-clients")
    store = shutil.copytree(pipeline_run.root / "artifacts" / "online_store", work / "online_store")
    proc = start_server("--registry", str(pipeline_run.registry), "--prediction-logs", str(work / "logs"),
                        "--store", f"embedded:{store}", "--header-timeout", str(HEADER_TIMEOUT_S),
                        "--body-timeout", str(BODY_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS), work=work)
    yield proc
    proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, server.port))
    sock.settimeout(BODY_TIMEOUT_S + HEADER_TIMEOUT_S + 10)
    return sock


def _until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, out = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return out, time.monotonic() - started


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _error(response: bytes) -> str:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 1000, 1023, 100_000])
def test_a_field_nested_deep_is_a_400_naming_the_limit(server: ServerProcess, raw_records: list[dict],
                                                        depth: int) -> None:
    one = json.dumps({**raw_records[0], "amount": "X"}).replace('"X"', _nested(depth))
    batch = json.dumps({"records": [raw_records[0], {**raw_records[1], "device_type": "X"}]}).replace('"X"', _nested(depth))
    for body in (one, batch, _nested(depth)):
        r = httpx.post(f"{server.base}/predict", content=body.encode(), timeout=30)
        assert r.status_code == 400, (depth, r.status_code, r.text[:300])
        assert f"more than {MAX_NESTING} levels deep" in r.json()["error"] and "flat JSON object" in r.json()["error"]
    shallow = json.dumps({**raw_records[0], "amount": "X"}).replace('"X"', _nested(3))
    r = httpx.post(f"{server.base}/predict", content=shallow.encode())
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "amount"  # shallow: named as a field


def test_an_unfinished_body_gets_408_within_the_timeout_and_the_connection_closed(server: ServerProcess) -> None:
    sock = _connect(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"amount\": 1,")  # 13 of 1,000 bytes, then nothing
    response, seconds = _until_closed(sock)
    assert _status(response) == 408, response
    assert BODY_TIMEOUT_S - 0.2 <= seconds <= BODY_TIMEOUT_S + SLACK_S
    assert "did not arrive within 2 s" in _error(response) and "--body-timeout" in _error(response)


def test_a_pipelined_request_with_an_unfinished_body_is_timed_out_too(server: ServerProcess,
                                                                      raw_records: list[dict]) -> None:
    body = json.dumps(raw_records[0]).encode()
    sock = _connect(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                 + b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    response, seconds = _until_closed(sock)
    assert response.count(b"HTTP/1.1 200 ") == 1 and response.count(b"HTTP/1.1 408 ") == 1, response[:500]
    assert seconds <= BODY_TIMEOUT_S + SLACK_S


def test_a_body_trickled_slowly_is_cut_at_the_body_timeout(server: ServerProcess) -> None:
    sock = _connect(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    try:
        for _ in range(100):  # a byte every 0.1 s: each read is prompt, the whole body is not
            sock.sendall(b" ")
            time.sleep(0.1)
    except OSError:
        pass  # closed by the server mid-trickle
    response, _ = _until_closed(sock)
    assert _status(response) == 408 and time.monotonic() - started <= BODY_TIMEOUT_S + SLACK_S


def test_headers_that_never_finish_get_408(server: ServerProcess) -> None:
    for sent in (b"", b"POST /predict HTTP/1.1\r\nHost: x\r\n", b"GET /ready HTTP/1.1\r\nX-Slow: "):
        sock = _connect(server)
        sock.sendall(sent)
        response, seconds = _until_closed(sock)
        assert _status(response) == 408 and "headers did not arrive within 1 s" in _error(response), sent
        assert seconds <= HEADER_TIMEOUT_S + SLACK_S
    # A kept-alive connection may idle between requests (uvicorn's keep-alive timeout), then be reused.
    with httpx.Client(base_url=server.base) as client:
        assert client.get("/ready").status_code == 200
        time.sleep(HEADER_TIMEOUT_S + 0.5)
        assert client.get("/ready").status_code == 200


def test_connections_past_the_cap_get_503_with_retry_after_and_are_released(server: ServerProcess) -> None:
    held = []
    for _ in range(MAX_CONNECTIONS):  # each holds a slot with an unfinished body
        sock = _connect(server)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        held.append(sock)
    time.sleep(0.3)  # the server has accepted them all
    refused = [_until_closed(_connect(server)) for _ in range(20)]
    assert {_status(r) for r, _ in refused} == {503}
    assert all(seconds < 1.0 for _, seconds in refused)  # at once, not after a timeout
    assert b"retry-after: 1\r\n" in refused[0][0].lower() and f"limit of {MAX_CONNECTIONS} connections" in _error(refused[0][0])
    answers = [_until_closed(sock) for sock in held]  # every held one is let go at its body timeout
    assert {_status(r) for r, _ in answers} == {408}
    assert max(seconds for _, seconds in answers) <= BODY_TIMEOUT_S + SLACK_S
    r = httpx.get(f"{server.base}/ready")
    assert r.status_code == 200  # the slots are free again
    metrics = httpx.get(f"{server.base}/metrics").text
    assert f'serving_errors_total{{kind="body_timeout"}}' in metrics
    timed_out = [line for line in metrics.splitlines() if line.startswith("serving_errors_total{kind=\"body_timeout\"}")]
    assert float(timed_out[0].rsplit(" ", 1)[1]) >= MAX_CONNECTIONS
    assert 'status="500"' not in metrics and "Traceback" not in server.output()


def test_timestamps_are_one_grammar_refused_naming_the_field_and_logged_in_canonical_utc(
        server: ServerProcess, raw_records: list[dict]) -> None:
    for odd in ("2026-W05-5", "20260201T100000", "2026-02-01T10:00:00\0", "2026-02-01T10:00:00+24:00"):
        r = httpx.post(f"{server.base}/predict", json={**raw_records[0], "txn_id": "odd", "txn_ts": odd})
        assert r.status_code == 422, (odd, r.text)
        (problem,) = r.json()["problems"]
        assert problem["field"] == "txn_ts" and "YYYY-MM-DDTHH:MM:SS" in problem["problem"], problem
    sent = {**raw_records[0], "txn_id": "zoned-1", "txn_ts": "2026-02-01t10:00:00+14:00"}
    r = httpx.post(f"{server.base}/predict", json=sent, headers={"x-request-id": "zoned-1"})
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for path in sorted((server.log_path.parent / "logs").glob("*.jsonl"))
             for line in path.read_text().splitlines() if '"zoned-1"' in line]
    (line,) = [line for line in lines if line["request_id"] == "zoned-1"]
    assert line["records"] == [sent]  # as sent, and beside it the instant the server scored, in UTC
    assert line["timestamps_utc"] == [{"txn_ts": "2026-01-31T20:00:00.000000Z"}]


def test_a_client_leaving_mid_pipeline_is_no_internal_error(server: ServerProcess, raw_records: list[dict]) -> None:
    """Found by the hostile fuzz: uvicorn marks only the newest request of a connection as gone, so
    a pipelined request running behind it wrote its answer to the closed socket (a RuntimeError,
    counted as an internal error); and bytes that are not HTTP after a request closed it alike."""
    body = json.dumps(raw_records[0]).encode()
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    for tail in (request * 2, b"\x00\xff NOT HTTP\r\n\r\n"):
        for _ in range(20):
            sock = _connect(server)
            sock.sendall(request + tail)
            sock.recv(1)  # the first answer has started: leave
            sock.close()
    time.sleep(0.5)
    metrics = httpx.get(f"{server.base}/metrics").text
    assert 'serving_errors_total{kind="internal"} 0' in metrics and "Traceback" not in server.output()
