"""`orchestrate.py init` on a multiclass CSV in hive-style day folders whose column names are not
identifiers (``Sepal.Length``, ``Petal Width``, ``Measured At``): quoted in the generated SQL,
accepted by the server and named in its OpenAPI document. It deploys with zero edits and every
serving path scores as the warehouse does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from tests.e2e.scaffold_support import Scaffolded, assert_every_path_scores_as_the_warehouse, days, scaffold_and_run

pytestmark = pytest.mark.slow
ROWS_PER_DAY = 240
SPECIES = {"setosa": (5.0, 3.4, 0.25), "versicolor": (5.9, 2.8, 1.3), "virginica": (6.6, 3.0, 2.0)}


def _flowers(rng: np.random.Generator, day: dt.date, n: int) -> pa.Table:
    species = rng.choice(list(SPECIES), n)
    centres = np.array([SPECIES[s] for s in species])
    values = np.round(centres + rng.normal(0, [0.35, 0.3, 0.2], (n, 3)), 1)
    measured = [dt.datetime.combine(day, dt.time(int(h), int(m))).isoformat(sep=" ")
                for h, m in zip(rng.integers(6, 20, n), rng.integers(0, 60, n))]
    return pa.table({
        "Measured At": measured,
        "Sepal.Length": values[:, 0],
        "Sepal.Width": values[:, 1],
        "Petal Width": values[:, 2],
        "Garden": rng.choice(["North", "South"], n).tolist(),
        "Species": species.tolist(),
    })


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Scaffolded:
    root = tmp_path_factory.mktemp("init_multiclass")
    landing = root / "landing" / "flowers"
    rng = np.random.default_rng(21)
    for day in days():
        (landing / f"date={day}").mkdir(parents=True)
        pacsv.write_csv(_flowers(rng, day, ROWS_PER_DAY), landing / f"date={day}" / "flowers.csv")
    return scaffold_and_run(root, landing, "--label", "Species")


def _names_every_field(openapi: dict[str, Any]) -> None:
    schema = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["oneOf"][0]["properties"]) == {"Measured At", "Sepal.Length", "Sepal.Width", "Petal Width",
                                                     "Garden"}


def test_a_multiclass_csv_with_any_column_names_deploys_and_serves_as_the_warehouse_scores(
        scaffolded: Scaffolded, tmp_path: Path) -> None:
    assert "multiclass on 'Species'; no key" in scaffolded.init_stdout
    assert "event time 'Measured At'" in scaffolded.init_stdout
    assert "parity passed" in scaffolded.run_stdout
    bundle = scaffolded.bundle()
    assert bundle.manifest.task == "multiclass" and list(bundle.manifest.classes) == sorted(SPECIES)
    assert bundle.manifest.metrics["test"]["accuracy"] > 0.8
    sql = (scaffolded.root / "dbt_project" / "macros" / "staging" / "flowers_columns.sql").read_text()
    assert 'cast("Sepal.Length" as double) as sepal_length' in sql
    assert_every_path_scores_as_the_warehouse(scaffolded, tmp_path, fused=True, check=_names_every_field)
