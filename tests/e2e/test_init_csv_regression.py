"""`orchestrate.py init` on daily CSV files without a timestamp or a key, and a regression target:
rows are dated by their file's day and keyed by a hash of their fields; a column named like a
SQL keyword (``table``) and capitalised ones (``Cut``) work. It deploys with zero edits and every
serving path scores as the warehouse does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from tests.e2e.scaffold_support import Scaffolded, assert_every_path_scores_as_the_warehouse, days, scaffold_and_run

pytestmark = pytest.mark.slow
ROWS_PER_DAY = 250


def _diamonds(rng: np.random.Generator, n: int) -> pa.Table:
    carat = np.round(rng.gamma(2.0, 0.4, n), 2)
    cut = rng.choice(["Ideal", "Premium", "Good", "Fair"], n)
    depth = np.round(rng.normal(61.5, 1.2, n), 1)
    table = np.round(rng.normal(57, 2, n), 1)
    price = 300 + 3900 * carat ** 1.6 * np.select([cut == "Ideal", cut == "Premium", cut == "Good"], [1.2, 1.1, 1.0], 0.85)
    return pa.table({
        "carat": carat,
        "Cut": cut.tolist(),
        "depth": depth,
        "table": table,
        "price": np.round(price * rng.lognormal(0, 0.08, n), 2),
    })


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Scaffolded:
    root = tmp_path_factory.mktemp("init_csv")
    landing = root / "landing" / "diamonds"
    landing.mkdir(parents=True)
    rng = np.random.default_rng(20)
    for day in days():
        pacsv.write_csv(_diamonds(rng, ROWS_PER_DAY), landing / f"{day}.csv")
    return scaffold_and_run(root, landing, "--label", "price")


def test_a_csv_without_timestamp_deploys_and_serves_as_the_warehouse_scores(scaffolded: Scaffolded,
                                                                          tmp_path: Path) -> None:
    assert ("regression on 'price'; no key: an md5 of the request fields (record_key); no timestamp: rows dated "
            "by their partition's day (landed_at)") in scaffolded.init_stdout
    assert "parity passed" in scaffolded.run_stdout
    bundle = scaffolded.bundle()
    assert bundle.manifest.task == "regression"
    assert [f.name for f in bundle.manifest.input_schema] == ["carat", "Cut", "depth", "table"]
    assert "table_value" in bundle.manifest.feature_names
    assert bundle.manifest.metrics["test"]["r2"] > 0.8
    assert_every_path_scores_as_the_warehouse(scaffolded, tmp_path, fused=True)
