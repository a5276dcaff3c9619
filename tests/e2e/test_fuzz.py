"""Fuzz the OpenAPI document of the running server: valid and schema-violating requests, never a 5xx."""

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.e2e.serverproc import ServerProcess

pytestmark = pytest.mark.slow
CASES = 1200




def test_openapi_fuzz_finds_no_server_error(champion_server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{champion_server.base}/openapi.json")
    predict = schema["/predict"]["POST"]
    cases = st.one_of(predict.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      predict.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                      schema.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    session = requests.Session()

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
