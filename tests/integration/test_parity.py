"""Training/serving parity on the pipeline's real warehouse and bundle."""

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving import Predictor
from serving.bundle import load_bundle
from serving.registry import resolve_bundle_path
from tests.conftest import REPO, PipelineRun
from training import dbt_manifest
from training.bundle import write_bundle
from training.parity import check_parity, held_out_raw_rows, replay

pytestmark = pytest.mark.slow


def _manifest(run: PipelineRun) -> dict:
    return dbt_manifest.load_manifest(run.root / "artifacts" / "dbt" / "target" / "manifest.json")


def _inputs(run: PipelineRun) -> tuple:
    manifest = _manifest(run)
    spec = dbt_manifest.feature_spec(manifest, "fct_transaction_features")
    states = dbt_manifest.entity_states(manifest)
    bundle = load_bundle(resolve_bundle_path(run.registry))
    fields = [f.name for f in bundle.manifest.input_schema]
    files = sorted((run.landing / "transactions").glob("*.parquet"))[-3:]
    start = files[0].stem
    return bundle, spec, states, held_out_raw_rows(files, fields, 2000, seed=1, time="txn_ts", start=start), start


def _check(bundle, raw: pa.Table, warehouse: Path, spec, states, start: str):
    """The parity gate as the pipeline runs it: replayed through a store as of ``start``, then compared."""
    served = replay(bundle, raw, warehouse, spec.key, "txn_ts", states, start)
    return check_parity(bundle, served, warehouse, spec)


def _rewrite(bundle, run: PipelineRun, **changes) -> object:
    """A new bundle with changed contents (through write_bundle, so its id is valid), served by its
    SQL path: the fused graph, compiled from the unchanged SQL, would not carry the change."""
    tables = changes.pop("tables", bundle.tables)
    _, path = write_bundle(run.root / "skewed", model_bytes=bundle.model_bytes,
                           serving_sql=changes.pop("serving_sql", bundle.serving_sql), tables=tables,
                           manifest=dataclasses.replace(bundle.manifest, fused=None, fused_refused="tampered"))
    return load_bundle(path)


def test_champion_passes_parity_on_held_out_raw_rows(pipeline_run: PipelineRun) -> None:
    bundle, spec, states, raw, start = _inputs(pipeline_run)
    report = _check(bundle, raw, pipeline_run.warehouse, spec, states, start)
    assert report.rows == raw.num_rows >= 1000
    assert report.passed, report.describe()
    assert report.max_score_diff <= 1e-6


def test_a_changed_frozen_statistic_fails_parity_and_names_the_feature(pipeline_run: PipelineRun) -> None:
    bundle, spec, states, raw, start = _inputs(pipeline_run)
    stats = bundle.tables["fitted_transaction_stats"]
    mean = stats.column("log_amount_mean")[0].as_py()
    skewed_stats = stats.set_column(stats.schema.get_field_index("log_amount_mean"), "log_amount_mean",
                                    pa.array([mean * (1 + 1e-6)]))
    skewed = _rewrite(bundle, pipeline_run, tables={**bundle.tables, "fitted_transaction_stats": skewed_stats})
    report = _check(skewed, raw, pipeline_run.warehouse, spec, states, start)
    assert not report.passed
    assert set(report.mismatches_by_feature) == {"log_amount_zscore"}
    assert report.mismatched_rows == raw.num_rows
    assert "log_amount_zscore for key" in report.describe()


def test_a_skewed_feature_sql_fails_parity_and_names_the_feature(pipeline_run: PipelineRun) -> None:
    bundle, spec, states, raw, start = _inputs(pipeline_run)
    sql = bundle.serving_sql.replace("cast(hour(t.event_at) < 6 as integer)", "cast(hour(t.event_at) < 5 as integer)")
    assert sql != bundle.serving_sql
    report = _check(_rewrite(bundle, pipeline_run, serving_sql=sql), raw, pipeline_run.warehouse, spec, states, start)
    assert not report.passed and set(report.mismatches_by_feature) == {"is_night"}
    assert 0 < report.mismatched_rows < raw.num_rows


def test_training_entity_state_uses_only_earlier_events(pipeline_run: PipelineRun) -> None:
    """Brute force: recount each sampled transaction's state from strictly earlier events."""
    with duckdb.connect(str(pipeline_run.warehouse), read_only=True) as con:
        rows = con.execute("""
            with sample as (
                select * from features.fct_user_state_at_transaction using sample reservoir(300 rows) repeatable (7)
            )
            select s.transaction_id, s.txn_count_24h, s.txn_count_30d, s.amount_sum_30d, s.last_event_at,
                   count(e.transaction_id) filter (where e.event_at >= s.state_at - interval 24 hours),
                   count(e.transaction_id) filter (where e.event_at >= s.state_at - interval 30 days),
                   coalesce(sum(e.amount) filter (where e.event_at >= s.state_at - interval 30 days), 0),
                   max(e.event_at)
            from sample s
            left join staging.stg_bank__transactions e on e.user_id = s.user_id and e.event_at < s.state_at
            group by all
        """).fetchall()
        future = con.execute("""
            select count(*) from features.fct_user_state_at_transaction s
            join staging.stg_bank__transactions t using (transaction_id)
            where s.state_at <> t.event_at or s.last_event_at >= t.event_at
        """).fetchone()[0]
    assert len(rows) == 300 and future == 0
    for txn, c24, c30, s30, last, b24, b30, bs30, blast in rows:
        assert (c24, c30, last) == (b24, b30, blast), txn
        assert s30 == pytest.approx(bs30, rel=1e-12), txn


def test_edge_case_records_match_the_warehouse_exactly(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    """Nulls, empty strings, unseen categories, zero/negative/huge amounts, midnight and DST
    instants, new and known users: landed as a partition, built by dbt, replayed through serving."""
    bundle = load_bundle(resolve_bundle_path(pipeline_run.registry))
    landing = tmp_path / "landing"
    shutil.copytree(pipeline_run.landing, landing)
    last = sorted((landing / "transactions").glob("*.parquet"))[-1]
    day = dt.date.fromisoformat(last.stem) + dt.timedelta(days=1)
    template = pq.read_table(last)
    known_user = template.column("user_id")[0].as_py()
    edge = []
    stamps = [dt.datetime.combine(day, dt.time(0, 0)), dt.datetime.combine(day, dt.time(1, 30)),
              dt.datetime.combine(day, dt.time(23, 59, 59))]
    cases = [
        {"merchant_category": None, "country_code": None, "device_type": None, "channel": None, "currency_code": None},
        {"merchant_category": "", "country_code": " ", "device_type": "", "channel": "", "currency_code": ""},
        {"merchant_category": "spaceships", "country_code": "AQ", "device_type": "quantum", "channel": "telepathy",
         "currency_code": "XTS"},
        {"merchant_category": " GROCERY ", "country_code": "us", "device_type": "IOS", "channel": "Online",
         "currency_code": "usd"},
    ]
    for i, case in enumerate(cases * 3):
        edge.append({"txn_id": f"edge_{i:03d}", "txn_ts": stamps[i % 3],
                     "user_id": known_user if i % 2 else f"brand_new_user_{i}", "merchant_id": "m_00001",
                     "amount": [0.0, -12.5, 1e9, 42.42][i % 4], "is_fraud": False, **case})
    pq.write_table(pa.Table.from_pylist(edge, schema=template.schema), landing / "transactions" / f"{day}.parquet")

    split = bundle.manifest.lineage["split"]
    env = {**os.environ, "WAREHOUSE_PATH": str(tmp_path / "w.duckdb"), "LANDING_PATH": str(landing),
           "DBT_TARGET_PATH": str(tmp_path / "target"), "DBT_LOG_PATH": str(tmp_path / "logs")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "run", "--vars", json.dumps(split)],
        cwd=REPO / "dbt_project", env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    manifest = dbt_manifest.load_manifest(tmp_path / "target" / "manifest.json")
    spec = dbt_manifest.feature_spec(manifest, "fct_transaction_features")
    raw = pa.Table.from_pylist(edge, schema=template.schema).drop_columns(["is_fraud"])
    report = _check(bundle, raw, tmp_path / "w.duckdb", spec, dbt_manifest.entity_states(manifest), day.isoformat())
    assert report.rows == len(edge)
    assert report.passed, report.describe()


def test_serving_never_reads_the_warehouse(pipeline_run: PipelineRun, raw_records: list[dict], tmp_path: Path) -> None:
    """Changing (here: deleting) the warehouse after training changes nothing a bundle computes."""
    before = Predictor.load(pipeline_run.registry, record=False).predict(raw_records).scores
    moved = tmp_path / "away.duckdb"
    shutil.move(pipeline_run.warehouse, moved)
    try:
        after = Predictor.load(pipeline_run.registry, record=False).predict(raw_records).scores
    finally:
        shutil.move(moved, pipeline_run.warehouse)
    np.testing.assert_array_equal(before, after)


def test_the_bundle_holds_no_entity_state(pipeline_run: PipelineRun) -> None:
    """Entity state is data, not model: no frozen table of the bundle has a row per user, and the
    bundle declares the entity it reads from the online store instead."""
    bundle = load_bundle(resolve_bundle_path(pipeline_run.registry))
    assert set(bundle.tables) == {"fitted_transaction_stats", "fitted_category_vocab"}
    assert all("user_id" not in t.column_names for t in bundle.tables.values())
    (entity,) = bundle.manifest.entity_state
    assert (entity.name, entity.key, entity.relation) == ("user", "user_id", "entity_events__user")
    assert bundle.manifest.fused and bundle.manifest.fused["event_inputs"]  # the graph takes the events as inputs
