"""`orchestrate.py init` on a daily Parquet folder with a timestamp, a text key and a binary
label: the generated project deploys with zero edits and every serving path scores as the
warehouse does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_orchestrator
from tests.e2e.scaffold_support import (Scaffolded, assert_every_path_scores_as_the_warehouse, days, generated_files,
                                        scaffold_and_run)

pytestmark = pytest.mark.slow
ROWS_PER_DAY = 250


def _impressions(rng: np.random.Generator, day: dt.date, n: int) -> pa.Table:
    category = rng.choice(["Sports", " news ", "FINANCE", "travel", "", None], n, p=[0.3, 0.25, 0.2, 0.15, 0.05, 0.05])
    bid = rng.gamma(2.0, 0.6, n)
    position = rng.integers(1, 9, n)
    mobile = rng.random(n) < 0.55
    hour = rng.integers(0, 24, n)
    logit = -1.2 + 0.9 * bid - 0.35 * position + 0.8 * mobile + np.where(np.isin(category, ["Sports"]), 0.9, 0.0)
    clicked = rng.random(n) < 1 / (1 + np.exp(-logit))
    shown = [dt.datetime.combine(day, dt.time(int(h), int(m))) for h, m in zip(hour, rng.integers(0, 60, n))]
    return pa.table({
        "impression_id": [f"{day:%m%d}-{i:05d}" for i in range(n)],
        "shown_at": pa.array(shown, pa.timestamp("us")),
        "ad_category": category.tolist(),
        "bid": bid,
        "position": position.astype(np.int64),
        "is_mobile": mobile,
        "clicked": clicked,
    })


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Scaffolded:
    root = tmp_path_factory.mktemp("init_parquet")
    landing = root / "landing" / "impressions"
    landing.mkdir(parents=True)
    rng = np.random.default_rng(18)
    for day in days():
        pq.write_table(_impressions(rng, day, ROWS_PER_DAY), landing / f"{day}.parquet")
    return scaffold_and_run(root, landing, "--label", "clicked", "--key", "impression_id")


def test_a_daily_parquet_folder_deploys_and_serves_as_the_warehouse_scores(scaffolded: Scaffolded, tmp_path: Path) -> None:
    assert "binary on 'clicked'; key 'impression_id'; event time 'shown_at'" in scaffolded.init_stdout
    assert "parity passed" in scaffolded.run_stdout
    assert generated_files(scaffolded) == [
        ".gitignore",
        "dbt_project/dbt_project.yml",
        "dbt_project/macros/features/impressions_features.sql",
        "dbt_project/macros/generate_schema_name.sql",
        "dbt_project/macros/serving/serving_impressions_features.sql",
        "dbt_project/macros/staging/impressions_columns.sql",
        "dbt_project/models/marts/ml/_ml__models.yml",
        "dbt_project/models/marts/ml/fct_impressions_features.sql",
        "dbt_project/models/marts/ml/fitted_impressions_stats.sql",
        "dbt_project/models/marts/ml/fitted_impressions_vocab.sql",
        "dbt_project/models/marts/validation/_validation__models.yml",
        "dbt_project/models/marts/validation/baseline_impressions_profile.sql",
        "dbt_project/models/staging/landing/_landing__models.yml",
        "dbt_project/models/staging/landing/_landing__sources.yml",
        "dbt_project/models/staging/landing/stg_landing__impressions.sql",
        "dbt_project/profiles.yml",
        "pipeline.yml",
    ]
    bundle = scaffolded.bundle()
    assert bundle.manifest.task == "binary"
    assert list(bundle.manifest.feature_names) == [
        "shown_at_hour", "shown_at_day_of_week", "ad_category_index", "bid", "bid_z", "position_value", "position_value_z",
        "is_mobile"]
    assert bundle.manifest.metrics["test"]["roc_auc"] > 0.6
    assert_every_path_scores_as_the_warehouse(scaffolded, tmp_path, fused=True)


def test_a_second_run_on_a_new_day_compares_with_the_champions_baseline(scaffolded: Scaffolded) -> None:
    """After the deploy a new day lands: the run validates it against the deployed model's
    baseline profile, and `monitor` skips with its reason (no monitoring models are generated yet)."""
    day = days()[-1] + dt.timedelta(days=1)
    pq.write_table(_impressions(np.random.default_rng(99), day, ROWS_PER_DAY),
                   scaffolded.root.parent / "landing" / "impressions" / f"{day}.parquet")
    result = run_orchestrator("--config", str(scaffolded.config), timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "baseline: checks compare with the training window of the deployed model" in result.stdout
    assert "monitored False, why the dbt project has no models tagged 'monitoring'" in result.stdout
    assert "WARNING" not in result.stderr, result.stderr
