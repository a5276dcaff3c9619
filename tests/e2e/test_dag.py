"""``orchestrate.py`` as a workflow engine, end to end on one small world: resume after SIGKILL at
each delicate point, skip when nothing changed, rerun only what a change reaches, --only/--from,
plan, a held warehouse lock, backfill and watch. Tests run in order and share the world."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from serving.registry import read_champion
from tests.conftest import REPO, run_orchestrator, write_config

pytestmark = pytest.mark.slow

@dataclass(frozen=True)
class World:
    root: Path
    config: Path
    project: Path

    @property
    def registry(self) -> Path:
        return self.root / "artifacts" / "registry"

    @property
    def partitions(self) -> Path:
        return self.root / "landing" / "transactions"

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.root / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(sql).fetchall()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_orchestrator(*args, "--config", str(self.config))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("dag")
    project = root / "dbt_project"
    shutil.copytree(REPO / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs"))
    return World(root, write_config(root, dbt={"project_dir": str(project)}), project)


def _ran(out: str) -> set[str]:
    """Stages the summary table says ran."""
    table = out[out.index("pipeline finished"):]
    return {line.split()[0] for line in table.splitlines() if line.startswith("  ") and " ran " in line}


def _killed_at(world: World, point: str) -> str:
    """Run the pipeline until it reaches pause point ``point``, then SIGKILL it and its dbt."""
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_PATH", "LANDING_PATH", "ARTIFACTS_PATH")}
    proc = subprocess.Popen([sys.executable, str(REPO / "orchestrate.py"), "--config", str(world.config)],
                            cwd=REPO, env={**env, "PIPELINE_PAUSE_AT": point}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.strip() == f"paused at {point}":
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # dbt, in the same process group, dies a moment later
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    out = "".join(lines)
    assert f"paused at {point}" in out, out
    return out


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_a_run_killed_at_each_delicate_point_resumes_where_it_stopped(world: World) -> None:
    out = _killed_at(world, "dbt")
    assert world.query("select status from ops.stage_runs where stage = 'dbt_build'") == [("running",)]
    published = world.query("select count(*) from information_schema.tables where table_name = 'publications'")
    assert published == [(0,)] and read_champion(world.registry) is None  # nothing consumed the half-built tables

    out = _killed_at(world, "publish")
    assert "[parse] skipped: unchanged since run" in out and "[ingest] skipped: unchanged since run" in out
    assert "[dbt_build] dbt run into audit schemas" in out and "(interrupted in run " in out
    assert world.query("select count(*) from validation.publications") == [(1,)]  # committed, stage unfinished

    out = _killed_at(world, "train")
    assert "interrupted in run" in out.split("[publish]")[1].splitlines()[0]  # publish resumed...
    assert world.query("select count(*) from validation.publications") == [(1,)]  # ...without a second row
    assert _visible(world.registry / "candidates") == []

    out = _killed_at(world, "bundle_write")
    assert "[publish] skipped" in out and "[train] fit" in out and "(interrupted in run" in out.split("[train] fit")[1]
    assert _visible(world.registry / "candidates") == []  # only the writer's .tmp- folder exists
    assert any(p.name.startswith(".tmp-") for p in (world.registry / "candidates").iterdir())

    out = _killed_at(world, "promote")
    assert "[train] skipped" in out and "[evaluate] compile" in out
    assert read_champion(world.registry) is None
    assert not any(p.name.startswith(".tmp-") for p in (world.registry / "candidates").iterdir())

    final = world.run()
    assert final.returncode == 0, final.stderr
    assert _ran(final.stdout) == {"deploy"}, final.stdout
    assert "[deploy] publish the candidate" in final.stdout and "interrupted in run" in final.stdout
    champion = read_champion(world.registry)
    assert champion is not None and _visible(world.registry / "bundles") == [champion["bundle_id"]]
    statuses = [s for (s,) in world.query("select status from ops.pipeline_runs order by started_at")]
    assert statuses == ["killed"] * 5 + ["succeeded"]  # each killed run is marked killed by the next start


def test_a_second_run_with_no_change_skips_every_stage_without_invoking_dbt(world: World) -> None:
    dbt_log = world.root / "artifacts" / "dbt" / "logs" / "dbt.log"
    before = dbt_log.stat()
    result = world.run()
    assert result.returncode == 0, result.stderr
    # The retrain policy reads the champion, which the last run deployed: it re-decides (in
    # milliseconds, without dbt) and holds. Everything else is unchanged.
    assert _ran(result.stdout) == {"retrain_policy"} and "1 stage(s) ran, 14 skipped" in result.stdout
    assert "[train] skipped: retrain policy holds: " in result.stdout
    again = world.run()
    assert again.returncode == 0 and "0 stage(s) ran, 15 skipped" in again.stdout
    after = dbt_log.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)  # dbt never started
    run_id = again.stdout.split(":", 1)[0].removeprefix("run ")
    assert world.query(f"select distinct status from ops.stage_runs where run_id = '{run_id}'") == [("skipped",)]


def test_a_changed_dbt_model_reruns_only_the_stages_that_depend_on_it(world: World) -> None:
    model = world.project / "models" / "marts" / "validation" / "baseline_transaction_profile.sql"
    model.write_text(model.read_text() + "\n-- reviewed: the profile's bins are fine\n")
    plan = world.run("plan")
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"^  parse +run .*changed: source:dbt_project", plan.stdout, re.M), plan.stdout
    assert re.search(r"^  demo_data +skip ", plan.stdout, re.M)
    champion = read_champion(world.registry)
    result = world.run()
    assert result.returncode == 0, result.stderr
    # The baseline profile is validation, not a feature input: data is rebuilt and audited, the
    # features come out identical, so no model stage runs.
    assert _ran(result.stdout) == {"parse", "ingest", "dbt_build", "dbt_test", "freshness", "validate", "publish"}
    assert read_champion(world.registry) == champion


def test_only_and_from_rerun_the_named_stages_and_a_held_lock_is_named(world: World) -> None:
    only = world.run("--only", "validate")
    assert only.returncode == 0, only.stderr
    assert _ran(only.stdout) == {"validate"} and "[validate] record every check" in only.stdout
    from_gates = world.run("run", "--from", "gates")
    assert from_gates.returncode == 0, from_gates.stderr
    assert _ran(from_gates.stdout) == {"gates", "deploy"} and "[train] skipped: taken as run" in from_gates.stdout

    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(world.root / "warehouse.duckdb")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        config = write_config(world.root / "locked", paths={"warehouse": str(world.root / "warehouse.duckdb")},
                              retries={"default": {"attempts": 2, "backoff_seconds": 0.2}})
        locked = run_orchestrator("--config", str(config))
    finally:
        holder.kill()
        holder.wait()
    assert locked.returncode == 1
    assert f"locked by another process: PID {holder.pid} (" in locked.stderr and "gave up after 2 attempt(s)" in locked.stderr
    assert "transient error" in locked.stdout and "attempt 2/2 in 0.2s" in locked.stdout
    assert "Traceback" not in locked.stderr


def _rewrite(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def test_a_changed_published_partition_is_refused_until_backfilled_and_backfill_is_idempotent(world: World) -> None:
    path = world.partitions / "2026-01-05.parquet"
    table = pq.read_table(path)
    amounts = table.column("amount").to_pylist()
    amounts[0] = amounts[0] * 2 + 1  # a corrected amount, delivered again under the same name
    _rewrite(path, table.set_column(table.schema.get_field_index("amount"), "amount",
                                    pa.array(amounts, table.schema.field("amount").type)))
    refused = world.run()
    assert refused.returncode == 1 and "2026-01-05.parquet" in refused.stderr and "published" in refused.stderr

    backfill = world.run("backfill", "--start", "2026-01-05", "--end", "2026-01-05")
    assert backfill.returncode == 0, backfill.stderr
    assert "backfill: reloading partition 2026-01-05.parquet" in backfill.stdout
    # The features changed; whether that retrains is the retrain policy's call (one corrected row: no).
    assert {"ingest", "dbt_build", "publish", "monitor", "retrain_policy"} <= _ran(backfill.stdout)
    assert "[train] skipped: retrain policy holds" in backfill.stdout
    again = world.run("backfill", "--start", "2026-01-05", "--end", "2026-01-05")
    assert again.returncode == 0, again.stderr
    assert {"ingest", "dbt_build", "publish"} <= _ran(again.stdout) and "monitor" not in _ran(again.stdout)
    empty = world.run("backfill", "--start", "2030-01-01", "--end", "2030-01-31")
    assert empty.returncode == 1 and "backfill 2030-01-01..2030-01-31: no landing partition in that range" in empty.stderr
    hashes = world.query("select features_hash from validation.publications order by published_at desc limit 2")
    assert hashes[0] == hashes[1]  # same range, same data: the same features
    assert world.query("select count(*), sum(count_rows) from raw.ingestion_log") == \
        world.query("select count(distinct filename), count(*) from raw.transactions")


def test_watch_runs_when_a_new_partition_lands(world: World) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_PATH", "LANDING_PATH", "ARTIFACTS_PATH")}
    proc = subprocess.Popen([sys.executable, str(REPO / "orchestrate.py"), "watch", "--config", str(world.config),
                             "--interval", "0.5", "--max-runs", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "pipeline finished" in line:
            break
    # The next day arrives: yesterday's traffic shape, new ids, a day later.
    last = sorted(world.partitions.glob("*.parquet"))[-1]
    table = pq.read_table(last)
    day = dt.date.fromisoformat(last.stem) + dt.timedelta(days=1)
    table = table.set_column(0, "txn_id", pc.binary_join_element_wise("w", table.column("txn_id"), ""))
    ts = table.schema.get_field_index("txn_ts")
    table = table.set_column(ts, "txn_ts", pc.add(table.column(ts), pa.scalar(dt.timedelta(days=1))))
    pq.write_table(table, world.partitions / f".{day}.parquet.tmp")
    os.replace(world.partitions / f".{day}.parquet.tmp", world.partitions / f"{day}.parquet")
    out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "watch: landing partitions found" in out and "watch: landing partitions changed" in out
    assert f"in {len(list(world.partitions.glob('*.parquet')))} partitions (1 new)" in out
