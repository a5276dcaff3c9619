"""Fuzz the running server, never a 5xx: schemathesis sends valid and schema-violating requests
from the OpenAPI document, and ``hostile_http`` what it cannot (deep nesting, unfinished and slow
bodies, stalled headers, broken framing, mutated records) over raw sockets. The server checks API
keys, and the fuzzers hold a valid one with every scope; its timeouts are short, so stalls end fast."""

import shutil
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.conftest import PipelineRun
from tests.e2e import hostile_http
from tests.e2e.serverproc import ServerProcess, bearer, issue_keys, start_server

pytestmark = pytest.mark.slow
CASES = 1200
HOSTILE_CASES = 3900
"""With schemathesis's, 5,100 HTTP cases a run."""
TIMEOUT_S = 1.0
"""The fuzzed server's header and body timeouts."""




@pytest.fixture(scope="module")
def keyed_server(pipeline_run: PipelineRun,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    work = tmp_path_factory.mktemp("fuzz")
    store = shutil.copytree(pipeline_run.root / "artifacts" / "online_store", work / "online_store")
    headers = bearer(issue_keys(work / "keys.json", {"fuzz": "score+record,admin"})["fuzz"])
    server = start_server("--registry", str(pipeline_run.registry), "--prediction-logs", str(work / "logs"),
                          "--store", f"embedded:{store}", "--api-keys", str(work / "keys.json"),
                          "--header-timeout", str(TIMEOUT_S), "--body-timeout", str(TIMEOUT_S), work=work)
    yield server, headers
    server.stop()


def test_openapi_fuzz_finds_no_server_error(keyed_server: tuple[ServerProcess, dict[str, str]]) -> None:
    champion_server, headers = keyed_server
    schema = schemathesis.openapi.from_url(f"{champion_server.base}/openapi.json", headers=headers)
    predict = schema["/predict"]["POST"]
    cases = st.one_of(predict.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      predict.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                      schema.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    session = requests.Session()
    session.headers.update(headers)

    @seed(20260105)
    @settings(max_examples=CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=champion_server.base, session=session, timeout=30)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            server_errors.append(f"{case.method} {case.path} body={case.body!r:.300} -> {response.text[:300]}")

    run()
    print(f'fuzz statuses: {dict(statuses)}')
    assert sum(statuses.values()) >= 1000, statuses
    assert server_errors == [], server_errors[:5]
    assert statuses[200] > 50 and statuses[422] > 50, statuses  # both valid and invalid requests were sent
    assert "Traceback" not in champion_server.output()


def test_hostile_http_fuzz_finds_no_server_error(keyed_server: tuple[ServerProcess, dict[str, str]],
                                                 raw_records: list[dict]) -> None:
    server, headers = keyed_server
    cases = hostile_http.cases(raw_records, headers, HOSTILE_CASES, seed=20)
    outcome = hostile_http.run(server.port, cases, concurrency=48, timeout_s=10 + 2 * TIMEOUT_S)
    print(f"hostile fuzz: {outcome.cases} cases, statuses {dict(sorted(outcome.statuses.items()))}")
    assert outcome.hung == [], outcome.hung[:5]
    assert outcome.server_errors == [], outcome.server_errors[:5]
    assert outcome.cases == HOSTILE_CASES
    by_kind = Counter(key.split()[0] for key in outcome.statuses)
    assert {"deep", "mutated", "framing", "route", "slow", "stall"} <= set(by_kind), by_kind
    assert outcome.statuses["deep 400"] > 500 and outcome.statuses["stall 408"] > 50, outcome.statuses
    assert outcome.statuses["slow 408"] > 0 and outcome.statuses["slow 200"] > 0, outcome.statuses
    metrics = requests.get(f"{server.base}/metrics", headers=headers, timeout=10).text
    assert 'serving_errors_total{kind="internal"} 0' in metrics and 'status="500"' not in metrics
    assert "Traceback" not in server.output()
