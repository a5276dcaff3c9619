"""`orchestrate.py init` on a hive-partitioned Parquet folder (``date=YYYY-MM-DD/part-N.parquet``,
two files a day) with an integer key and a 0/1 label: it deploys with zero edits, the day folders
are ingested as they landed, and every serving path scores as the warehouse does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.scaffold_support import Scaffolded, assert_every_path_scores_as_the_warehouse, days, scaffold_and_run

pytestmark = pytest.mark.slow
ROWS_PER_FILE = 120


def _sessions(rng: np.random.Generator, day: dt.date, n: int, first_id: int) -> pa.Table:
    pages = rng.poisson(4, n)
    seconds = rng.gamma(2.0, 90.0, n)
    source = rng.choice(["search", "ads", "direct", "email"], n)
    returning = rng.random(n) < 0.4
    logit = -2.0 + 0.25 * pages + 0.004 * seconds + 0.7 * returning + np.where(source == "email", 0.8, 0.0)
    started = [dt.datetime.combine(day, dt.time(int(h), int(m), tzinfo=dt.timezone.utc))
               for h, m in zip(rng.integers(0, 24, n), rng.integers(0, 60, n))]
    return pa.table({
        "session_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "started_at": pa.array(started, pa.timestamp("us", tz="UTC")),  # a zoned timestamp
        "traffic_source": source.tolist(),
        "pages_viewed": pages.astype(np.int64),
        "seconds_on_site": seconds,
        "is_returning": returning,
        "converted": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
    })


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Scaffolded:
    root = tmp_path_factory.mktemp("init_hive")
    landing = root / "landing" / "sessions"
    rng = np.random.default_rng(19)
    for d, day in enumerate(days()):
        folder = landing / f"date={day}"
        folder.mkdir(parents=True)
        for part in range(2):  # every day's folder holds part-0.parquet and part-1.parquet
            first = 1_000_000 + (2 * d + part) * ROWS_PER_FILE
            pq.write_table(_sessions(rng, day, ROWS_PER_FILE, first), folder / f"part-{part}.parquet")
    return scaffold_and_run(root, landing, "--label", "converted", "--key", "session_id")


def test_a_hive_partitioned_folder_deploys_and_serves_as_the_warehouse_scores(scaffolded: Scaffolded,
                                                                            tmp_path: Path) -> None:
    assert "(2,880 rows, 12 days, hive parquet)" in scaffolded.init_stdout
    assert "binary on 'converted'; key 'session_id'; event time 'started_at'" in scaffolded.init_stdout
    assert "parity passed" in scaffolded.run_stdout
    with duckdb.connect(str(scaffolded.root / "data" / "warehouse.duckdb"), read_only=True) as con:
        logged = [r[0] for r in con.execute("select file_name from raw.ingestion_log order by 1").fetchall()]
    assert len(logged) == 24 and logged[:2] == ["date=2026-05-01/part-0.parquet", "date=2026-05-01/part-1.parquet"]
    bundle = scaffolded.bundle()
    assert {f.name: f.type for f in bundle.manifest.input_schema}["session_id"] == "integer"
    assert_every_path_scores_as_the_warehouse(scaffolded, tmp_path, fused=True)
