"""``python orchestrate.py`` end to end on a small generated dataset."""

import json
from pathlib import Path

import numpy as np
import pytest

from serving import Predictor
from serving.registry import read_champion
from tests.conftest import PipelineRun, run_orchestrator, write_config

pytestmark = pytest.mark.slow


def test_run_deploys_a_model_and_prints_a_summary(pipeline_run: PipelineRun) -> None:
    out = pipeline_run.result.stdout
    for stage in ("demo_data", "parse", "ingest", "dbt_build", "dbt_test", "freshness", "validate", "publish",
                  "train", "evaluate", "deploy"):
        assert f"[{stage}] done" in out
    assert "pipeline finished" in out and "deployed model" in out
    champion = read_champion(pipeline_run.registry)
    assert champion is not None and champion["bundle_id"] in out
    manifest = json.loads((pipeline_run.registry / "bundles" / champion["bundle_id"] / "manifest.json").read_text())
    test = manifest["metrics"]["test"]
    assert 0.75 < test["roc_auc"] < 1.0, test
    assert manifest["lineage"]["data_fingerprint"]["rows"] > 0
    assert manifest["lineage"]["packages"]["duckdb"]
    assert [f["name"] for f in manifest["input_schema"]][:2] == ["txn_id", "txn_ts"]
    assert "is_fraud" not in {f["name"] for f in manifest["input_schema"]}


def test_a_clean_run_passes_every_check_and_publishes_what_it_trains_on(pipeline_run: PipelineRun) -> None:
    import duckdb

    with duckdb.connect(str(pipeline_run.warehouse), read_only=True) as con:
        failed = con.execute("select check_name from validation.check_results where passed = false  -- null: not judged (a small day)").fetchall()
        checks, alerts = con.execute("select count(*), (select count(*) from validation.alerts) "
                                     "from validation.check_results").fetchone()
        logged = con.execute("select count(*), count(published_at), sum(count_rows) from raw.ingestion_log").fetchone()
        raw = con.execute("select count(*) from raw.transactions").fetchone()[0]
        published = con.execute("select count(*) from validation.publications").fetchone()[0]
    assert failed == [] and checks > 50 and alerts == 0
    assert logged == (20, 20, raw) and published == 1
    assert "checks          " in pipeline_run.result.stdout and "0 warnings" in pipeline_run.result.stdout


def test_deployed_model_scores_raw_records_in_process(pipeline_run: PipelineRun, raw_records: list[dict]) -> None:
    predictor = Predictor.load(pipeline_run.registry, record=False)
    result = predictor.predict(raw_records)
    assert result.model_id == read_champion(pipeline_run.registry)["bundle_id"]
    assert result.scores.shape == (len(raw_records),) and np.all((result.scores >= 0) & (result.scores <= 1))
    # Same record alone or in a batch: same score (no cross-row leakage in the serving SQL).
    alone = predictor.predict(raw_records[3]).scores[0]
    assert alone == pytest.approx(result.scores[3], abs=0)


def test_onnx_matches_sklearn_on_the_test_split(pipeline_run: PipelineRun) -> None:
    champion = read_champion(pipeline_run.registry)["bundle_id"]
    parity = json.loads((pipeline_run.registry / "bundles" / champion / "manifest.json").read_text())["metrics"]["export_parity"]
    assert parity["rows"] > 1000
    assert parity["label_mismatches"] == 0
    assert parity["max_abs_diff"] <= 1e-5


def test_empty_landing_folder_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, demo_data={"generate_if_empty": False})
    result = run_orchestrator("--config", str(config))
    assert result.returncode == 1
    assert "stage 'ingest' failed" in result.stderr and "no landing partitions" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "artifacts" / "registry" / "champion.json").exists()


def test_bad_config_is_named_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("model: {famliy: x}\n")
    result = run_orchestrator("--config", str(config))
    assert result.returncode == 2
    assert "model: unknown key(s) ['famliy']" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_stages() -> None:
    result = run_orchestrator("--help")
    assert result.returncode == 0
    assert "ingest" in result.stdout and "deploy" in result.stdout


def test_rerun_on_the_same_data_reproduces_the_same_bundle(pipeline_run: PipelineRun) -> None:
    before = read_champion(pipeline_run.registry)["bundle_id"]
    # --force: every stage reruns (unforced, an unchanged run skips them all; see test_dag.py).
    result = run_orchestrator("--config", str(pipeline_run.config), "--force")
    assert result.returncode == 0, result.stderr
    assert '"new_partitions": 0' in result.stdout
    after = read_champion(pipeline_run.registry)
    # Same data, config, code and seed: byte-identical model and bundle, hence the same id.
    assert after["bundle_id"] == before  # re-promoting the champion is a no-op: the pointer is not rewritten
    assert "is already the champion; nothing changed" in result.stdout


def test_runs_are_tracked_listed_and_compared(pipeline_run: PipelineRun) -> None:
    import duckdb

    with duckdb.connect(str(pipeline_run.warehouse), read_only=True) as con:
        run_id, status, commit, onnx_sha, params = con.execute(
            "select run_id, status, code_commit, onnx_sha256, params from ml.training_runs order by recorded_at limit 1"
        ).fetchone()
        metrics = dict(con.execute(
            "select split || '.' || metric, value from ml.run_metrics where run_id = ?", [run_id]).fetchall())
        stages = {r[0] for r in con.execute("select stage from ml.run_stage_durations where run_id = ?", [run_id]).fetchall()}
    assert status == "succeeded" and len(onnx_sha) == 64 and commit
    assert json.loads(params)["max_iter"] == 40
    assert {"train.roc_auc", "validation.pr_auc", "test.log_loss", "test.brier", "test.precision", "test.recall",
            "test.threshold"} <= set(metrics)
    assert {"ingest", "dbt_build", "train", "train.fit", "train.export"} <= stages
    listed = run_orchestrator("runs", "--config", str(pipeline_run.config))
    assert listed.returncode == 0 and run_id in listed.stdout and "succeeded" in listed.stdout
    compared = run_orchestrator("runs", "--config", str(pipeline_run.config), "--compare", run_id[:8], run_id)
    assert compared.returncode == 0 and "test.roc_auc" in compared.stdout and "onnx_sha256" in compared.stdout
    missing = run_orchestrator("runs", "--config", str(pipeline_run.config), "--compare", "nope", run_id)
    assert missing.returncode == 1 and "run 'nope': no run" in missing.stderr


def test_training_over_the_memory_budget_uses_a_recorded_seeded_sample(tmp_path: Path, pipeline_run: PipelineRun) -> None:
    import shutil

    # The session's data, warehouse and stage outputs; retrain from them (--from train).
    shutil.copytree(pipeline_run.landing, tmp_path / "landing")
    shutil.copy(pipeline_run.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(pipeline_run.root / "artifacts", tmp_path / "artifacts")
    config = write_config(tmp_path, training={"max_rows": 8000}, parity={"rows": 300})
    result = run_orchestrator("--config", str(config), "--from", "train")
    assert result.returncode == 0, result.stderr
    assert "exceed training.max_rows (8,000): training on a seeded sample of" in result.stdout
    champion = read_champion(tmp_path / "artifacts" / "registry")["bundle_id"]
    lineage = json.loads((tmp_path / "artifacts" / "registry" / "bundles" / champion / "manifest.json").read_text())["lineage"]
    assert lineage["training_rows_sampled_from"] == 20_000
