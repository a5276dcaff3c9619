"""E2E fixtures: the real server on the session's registry, one per test module."""

from collections.abc import Iterator

import pytest

from tests.conftest import PipelineRun
from tests.e2e.serverproc import ServerProcess, start_server


@pytest.fixture(scope="module")
def champion_server(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``python -m serving --registry <session registry>`` on 127.0.0.1, prediction logs under a temp dir."""
    work = tmp_path_factory.mktemp("server")
    server = start_server("--registry", str(pipeline_run.registry), "--prediction-logs", str(work / "logs"), work=work)
    yield server
    server.stop()
