"""E2E fixtures: the real server on the session's registry, one per test module."""

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import PipelineRun
from tests.e2e.serverproc import ServerProcess, start_server


@pytest.fixture(scope="module")
def champion_server(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``python -m serving --registry <session registry>`` on 127.0.0.1, prediction logs under a temp dir."""
    work = tmp_path_factory.mktemp("server")
    # A copy of the session's online store: what these tests record stays out of the others' state.
    store = shutil.copytree(pipeline_run.root / "artifacts" / "online_store", work / "online_store")
    server = start_server("--registry", str(pipeline_run.registry), "--prediction-logs", str(work / "logs"),
                          "--store", f"embedded:{store}", work=work)
    yield server
    server.stop()
