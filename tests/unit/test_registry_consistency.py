"""The registry agrees with itself under faults: write-ahead history, no-op re-promotion,
rollback to the last different champion, and hot reload that checks the manifest's id."""

import json
import logging
import shutil
from pathlib import Path

import pytest

from orchestration.promotion import rollback_target
from serving import registry
from serving.errors import RegistryError
from serving.metrics import ServerMetrics
from serving.predictor import Predictor
from serving.reload import ChampionWatcher, ModelHolder
from tests.unit.test_bundle_and_registry import _bundle


def test_promoting_the_champion_is_a_no_op(tmp_path: Path) -> None:
    first, _ = _bundle(tmp_path)
    registry.promote(tmp_path, first, by="test", reason="first")
    pointer = (tmp_path / registry.POINTER).read_bytes()
    record = registry.promote(tmp_path, first, by="test", reason="again")
    assert record["changed"] is False and record["bundle_id"] == first
    assert (tmp_path / registry.POINTER).read_bytes() == pointer
    assert len(registry.read_history(tmp_path)) == 1


def test_rollback_returns_to_the_last_different_champion(tmp_path: Path) -> None:
    first, _ = _bundle(tmp_path)
    second, _ = _bundle(tmp_path, threshold=0.6)
    registry.promote(tmp_path, first, by="test", reason="first")
    registry.promote(tmp_path, second, by="test", reason="second")
    # What `--from train` left before the no-op rule: a line re-promoting the champion over itself.
    registry._append_history(tmp_path, {"bundle_id": second, "previous_bundle_id": second, "by": "old", "reason": "x"})
    (tmp_path / registry.POINTER).write_text(json.dumps({"bundle_id": second, "previous_bundle_id": second}))
    assert rollback_target(tmp_path) == first


def test_unwritable_history_leaves_the_champion_and_says_so(tmp_path: Path) -> None:
    first, _ = _bundle(tmp_path)
    second, _ = _bundle(tmp_path, threshold=0.6)
    registry.promote(tmp_path, first, by="test", reason="first")
    (tmp_path / registry.HISTORY).unlink()
    (tmp_path / registry.HISTORY).mkdir()  # unwritable even for root
    with pytest.raises(RegistryError, match=f"cannot record the promotion of {second[:12]}.*champion is unchanged \\({first[:12]}\\)"):
        registry.promote(tmp_path, second, by="test", reason="second")
    assert registry.read_champion(tmp_path)["bundle_id"] == first


def test_a_crash_after_the_write_ahead_line_is_not_a_champion(tmp_path: Path) -> None:
    first, _ = _bundle(tmp_path)
    second, _ = _bundle(tmp_path, threshold=0.6)
    registry.promote(tmp_path, first, by="test", reason="first")

    def crash() -> None:
        raise OSError("simulated crash before the pointer swap")

    with pytest.raises(RegistryError, match="cannot swap the champion pointer.*champion is unchanged"):
        registry.promote(tmp_path, second, by="test", reason="second", before_replace=crash)
    assert registry.read_champion(tmp_path)["bundle_id"] == first
    assert [r["bundle_id"] for r in registry.read_history(tmp_path)] == [first, second]
    assert [r["bundle_id"] for r in registry.champions(tmp_path)] == [first]


def test_hot_reload_refuses_a_folder_whose_manifest_holds_another_id_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, first_path = _bundle(tmp_path)
    fake = "e" * 64
    shutil.copytree(first_path, registry.bundles_dir(tmp_path) / fake)
    holder = ModelHolder(Predictor.load(first_path))
    metrics = ServerMetrics()
    watcher = ChampionWatcher(tmp_path, holder, metrics, interval_s=60)
    registry.promote(tmp_path, first, by="test", reason="first")
    registry.promote(tmp_path, fake, by="test", reason="misnamed copy")
    with caplog.at_level(logging.ERROR, logger="serving.reload"):
        assert watcher.check_once() == "refused"
        assert watcher.check_once() is None  # not retried every interval
    assert sum("differs from the champion pointer" in r.getMessage() for r in caplog.records) == 1
    assert holder.current.model_id == first
    holder.current.close()


def test_a_registry_whose_champion_folder_holds_another_id_is_refused_at_start(tmp_path: Path) -> None:
    first, first_path = _bundle(tmp_path)
    fake = "e" * 64
    shutil.copytree(first_path, registry.bundles_dir(tmp_path) / fake)
    registry.promote(tmp_path, fake, by="test", reason="misnamed copy")
    with pytest.raises(RegistryError, match=f"bundle_id {first[:12]} differs from the champion pointer's {fake[:12]}"):
        registry.resolve_bundle_path(tmp_path)
