"""A fused model that fails to load, run or match the SQL path is switched off when the bundle is
built, and the bundle deploys serving the SQL path: it never fails the run (issue 17)."""

import shutil
from pathlib import Path

import pytest

from serving import Predictor
from serving.bundle import load_bundle
from serving.registry import read_champion, resolve_bundle_path
from tests.conftest import PipelineRun, run_orchestrator, write_config

pytestmark = pytest.mark.slow


def test_a_fused_graph_onnx_runtime_cannot_load_is_switched_off_and_the_sql_path_serves(
        pipeline_run: PipelineRun, raw_records: list[dict], tmp_path: Path) -> None:
    shutil.copytree(pipeline_run.landing, tmp_path / "landing")
    shutil.copy(pipeline_run.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(pipeline_run.root / "artifacts", tmp_path / "artifacts")
    before = read_champion(tmp_path / "artifacts" / "registry")["bundle_id"]
    config = write_config(tmp_path, seed=44)  # another model, so the candidate is a new bundle
    # The fault adds a Where over booleans: valid ONNX that ONNX Runtime has no kernel for, what
    # the old compiler emitted for `case when w = 0 then null else l / w end`.
    result = run_orchestrator("--config", str(config), "--from", "train", env={"PIPELINE_FAULT": "fused_load"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "fused model switched off, the SQL path will serve" in result.stdout
    champion = read_champion(tmp_path / "artifacts" / "registry")["bundle_id"]
    assert champion != before
    bundle = load_bundle(resolve_bundle_path(tmp_path / "artifacts" / "registry"))
    assert bundle.manifest.fused is None and bundle.fused_bytes is None
    assert "Where(16)" in (bundle.manifest.fused_refused or "")
    predictor = Predictor(bundle)
    try:
        assert predictor.feature_path == "sql"
        scores = predictor.predict(raw_records[:20]).scores
        assert len(scores) == 20
    finally:
        predictor.close()


def test_the_session_bundle_serves_unicode_variants_the_same_on_both_paths(pipeline_run: PipelineRun,
                                                                          raw_records: list[dict]) -> None:
    """The outside probe's example: '\\u3000terminal' (DuckDB's trim strips U+3000) and friends."""
    import numpy as np

    from training.edge_cases import variants

    records = []
    for record in raw_records[:10]:
        for field in ("device_type", "channel", "country_code", "merchant_category", "currency_code"):
            for spelling in variants(str(record[field])) + ["\u3000terminal", "İOS", "ıos", "ioſ"]:
                records.append({**record, "txn_id": f"{record['txn_id']}-v{len(records)}", field: spelling})
    fused = Predictor.load(pipeline_run.registry, path="fused", record=False)
    sql = Predictor.load(pipeline_run.registry, path="sql", record=False)
    try:
        np.testing.assert_allclose(fused.predict(records).scores, sql.predict(records).scores, rtol=0, atol=1e-6)
        for i in range(0, len(records), 97):  # one record at a time takes the exact-table branch
            assert abs(fused.predict(records[i]).scores[0] - sql.predict(records[i]).scores[0]) <= 1e-6
    finally:
        fused.close()
        sql.close()
