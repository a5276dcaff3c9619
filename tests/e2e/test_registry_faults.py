"""Registry consistency end to end: re-deploying the champion is a no-op, so a later rollback
returns to the last different champion; an unwritable history leaves the pointer alone."""

from pathlib import Path

import pytest

from serving.registry import HISTORY, read_champion, read_history
from tests.conftest import PipelineRun, derive_bundle, run_orchestrator, write_config
from tests.e2e.test_gates_and_registry import _copy_state

pytestmark = pytest.mark.slow


def test_rollback_after_from_train_changes_the_champion(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _copy_state(pipeline_run, tmp_path, with_warehouse=True)
    registry = tmp_path / "artifacts" / "registry"
    config = write_config(tmp_path)
    first = read_champion(registry)["bundle_id"]
    second = derive_bundle(registry, threshold=0.4)
    for bundle in (second, first):
        assert run_orchestrator("promote", bundle[:16], "--reason", "test", "--config", str(config)).returncode == 0
    lines = len(read_history(registry))

    retrained = run_orchestrator("--config", str(config), "--from", "train")
    assert retrained.returncode == 0, retrained.stderr[-2000:]
    deployed = read_champion(registry)["bundle_id"]
    if deployed == first:  # the same bundle again (lineage equal): a no-op, nothing recorded
        assert f"{first[:12]} is already the champion; nothing changed" in retrained.stdout
        assert len(read_history(registry)) == lines

    back = run_orchestrator("rollback", "--reason", "test", "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert read_champion(registry)["bundle_id"] == (second if deployed == first else first)


def test_unwritable_history_leaves_the_champion(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _copy_state(pipeline_run, tmp_path)
    registry = tmp_path / "artifacts" / "registry"
    config = write_config(tmp_path)
    first = read_champion(registry)["bundle_id"]
    second = derive_bundle(registry, threshold=0.4)
    (registry / HISTORY).unlink()
    (registry / HISTORY).mkdir()  # unwritable, even as root
    result = run_orchestrator("promote", second[:16], "--reason", "test", "--config", str(config))
    assert result.returncode == 1
    assert f"the champion is unchanged ({first[:12]})" in result.stderr
    assert read_champion(registry)["bundle_id"] == first
