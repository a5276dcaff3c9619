"""Deploy is a gate: bad candidates are blocked loudly, the champion stays, and the registry's
promotions, rollbacks and crashes behave."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from orchestration.config import Slice
from serving import Predictor
from serving.registry import read_champion, read_history
from tests.conftest import REPO, PipelineRun, run_orchestrator, write_config
from training.gates import slice_gates

pytestmark = pytest.mark.slow


def _copy_state(run: PipelineRun, root: Path, with_warehouse: bool = False) -> None:
    """Landing data and registry (with its champion) of the session run, in a new folder; with the
    warehouse, also its run records and stage outputs, so `--from train` can start from them."""
    shutil.copytree(run.landing, root / "landing")
    if with_warehouse:
        shutil.copy(run.warehouse, root / "warehouse.duckdb")
        shutil.copytree(run.root / "artifacts", root / "artifacts")
    else:
        shutil.copytree(run.registry, root / "artifacts" / "registry")


def _blocked(root: Path, config: Path, gate: str, *args: str) -> subprocess.CompletedProcess:
    """Retrain (forced: the retrain policy would hold on unchanged data) and expect ``gate`` to block."""
    champion_before = read_champion(root / "artifacts" / "registry")
    result = run_orchestrator("--config", str(config), *args)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "stage 'gates' failed" in result.stderr and gate in result.stderr
    assert "Traceback" not in result.stderr
    assert read_champion(root / "artifacts" / "registry") == champion_before  # nothing deployed
    kept = list((root / "artifacts" / "registry" / "candidates").iterdir())
    assert len(kept) == 1 and (kept[0] / "gate_report.json").exists()  # kept for inspection
    report = json.loads((kept[0] / "gate_report.json").read_text())
    assert any(not r["passed"] and gate in r["gate"] for r in report)
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        failed = con.execute("select gate from ml.gate_results where not passed").fetchall()
    assert any(gate in g for (g,) in failed)
    return result


def test_model_trained_on_shuffled_labels_is_blocked(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _copy_state(pipeline_run, tmp_path)
    project = tmp_path / "dbt_project"
    shutil.copytree(REPO / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    mart = project / "models" / "marts" / "ml" / "fct_transaction_features.sql"
    # Labels unrelated to anything the model sees, at about the real fraud rate.
    mart.write_text(mart.read_text().replace("cast(transactions.is_fraud as integer)",
                                             "cast(hash(transactions.transaction_id) % 50 = 0 as integer)"))
    config = write_config(tmp_path, dbt={"project_dir": str(project)}, gates={"metrics": {"roc_auc": 0.7}})
    result = _blocked(tmp_path, config, "metric validation.roc_auc", "--force")
    assert ">= 0.7" in result.stderr


def test_model_that_regresses_against_the_champion_is_blocked(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _copy_state(pipeline_run, tmp_path, with_warehouse=True)
    config = write_config(tmp_path, model={"params": {"max_iter": 2, "max_leaf_nodes": 3, "learning_rate": 0.05}},
                          gates={"regression_tolerance": 0.0})
    result = _blocked(tmp_path, config, "no regression vs champion (roc_auc)", "--from", "train")
    assert "scores" in result.stderr and "on the same" in result.stderr


def test_model_that_fails_a_slice_threshold_is_blocked(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _copy_state(pipeline_run, tmp_path, with_warehouse=True)
    config = write_config(tmp_path, gates={"slices": [
        {"name": "night", "where": "is_night = 1", "thresholds": {"roc_auc": 0.9999}, "min_rows": 10}]})
    _blocked(tmp_path, config, "slice night: roc_auc", "--from", "train")


def test_slices_by_predicate_and_by_value_are_computed_in_duckdb() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.random(n) < 0.3
    good = np.clip(np.where(y, 0.9, 0.1) + rng.normal(0, 0.05, n), 0, 1)
    group = rng.integers(0, 3, n)
    score = np.where(group == 2, rng.random(n), good)  # the model is useless on group 2
    holdout = pa.table({"group": group, "amount": rng.random(n) * 100, "is_fraud": y.astype(int), "score": score})
    results = slice_gates(holdout, "binary", [
        Slice(name="big", where="amount > 50", thresholds={"recall": 0.1}),
        Slice(name="group", by="group", thresholds={"roc_auc": 0.8}),
        Slice(name="tiny", where="amount > 99.9", thresholds={"roc_auc": 0.8}),
    ], np.array([0, 1]), 0.5, "is_fraud")
    verdicts = {r.gate: r.passed for r in results}
    assert verdicts["slice group = 0: roc_auc"] and verdicts["slice group = 1: roc_auc"]
    assert not verdicts["slice group = 2: roc_auc"]
    assert verdicts["slice big: recall"]
    tiny = next(r for r in results if r.gate == "slice tiny")
    assert tiny.passed and "not evaluable" in tiny.detail


def test_latency_gate_blocks_a_model_over_its_budget(pipeline_run: PipelineRun, raw_records: list[dict]) -> None:
    from training.gates import latency_gate

    predictor = Predictor.load(pipeline_run.registry, record=False)
    result = latency_gate(predictor, raw_records[:40], budget_ms=0.001)
    assert not result.passed and result.value > 0.001


def test_manual_promote_and_rollback_are_recorded(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    _copy_state(pipeline_run, tmp_path, with_warehouse=True)
    registry = tmp_path / "artifacts" / "registry"
    first = read_champion(registry)["bundle_id"]
    # A second run with another seed gives a second bundle; make it a kept candidate by gating it out.
    config = write_config(tmp_path, seed=43, gates={"metrics": {"roc_auc": 0.99999}})
    assert run_orchestrator("--config", str(config), "--from", "train").returncode == 1
    (candidate,) = [p.name for p in (registry / "candidates").iterdir()]

    promoted = run_orchestrator("promote", candidate[:10], "--reason", "hotfix approved by risk team", "--config", str(config))
    assert promoted.returncode == 0, promoted.stderr
    assert read_champion(registry)["bundle_id"] == candidate
    assert (registry / "bundles" / candidate).is_dir() and not (registry / "candidates" / candidate).exists()

    back = run_orchestrator("rollback", "--reason", "alerts on the new model", "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert read_champion(registry)["bundle_id"] == first
    history = read_history(registry)
    assert [h["bundle_id"] for h in history[-2:]] == [candidate, first]
    assert "hotfix approved" in history[-2]["reason"] and "manual promote" in history[-2]["by"]
    assert history[-1]["reason"].startswith(f"rollback from {candidate[:12]}")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        reasons = [r[0] for r in con.execute("select reason from ml.promotions order by promoted_at").fetchall()]
    assert any("hotfix approved" in r for r in reasons) and any(r.startswith("rollback from") for r in reasons)

    unknown = run_orchestrator("promote", "ffff", "--reason", "x", "--config", str(config))
    assert unknown.returncode == 1 and "matches no bundle or candidate" in unknown.stderr


def test_process_killed_during_promotion_leaves_the_previous_champion(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    import os

    _copy_state(pipeline_run, tmp_path)
    registry = tmp_path / "artifacts" / "registry"
    before = read_champion(registry)
    other = registry / "bundles" / ("0" * 64)
    shutil.copytree(registry / "bundles" / before["bundle_id"], other)  # any second bundle dir will do
    config = write_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "orchestrate.py"), "promote", "0000", "--reason", "r", "--config", str(config)],
        env={**os.environ, "PIPELINE_PAUSE_AT": "promote"}, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "paused at promote"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert read_champion(registry) == before
    assert Predictor.load(registry).model_id == before["bundle_id"]
    assert list(registry.glob(".champion.json.*.tmp"))  # the unfinished pointer, never visible
    # The next promotion proceeds and sweeps the leftover.
    assert run_orchestrator("promote", "0000", "--reason", "retry", "--config", str(config)).returncode == 0
    assert read_champion(registry)["bundle_id"] == "0" * 64
    assert not list(registry.glob(".champion.json.*.tmp"))
