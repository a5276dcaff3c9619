"""One run at a time: a second process is refused naming the holder, or waits with --wait;
runs that died are marked killed by the next one."""

import subprocess
import sys
import time
from pathlib import Path

import duckdb

from orchestration import records
from orchestration.runlock import lock_path
from tests.conftest import REPO, run_orchestrator, write_config

HOLD = """
import sys, time
from pathlib import Path
from orchestration.runlock import run_lock
with run_lock(Path(sys.argv[1]), "holder", wait="--wait" in sys.argv, echo=lambda m: print(m, flush=True)):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(warehouse: Path, seconds: float, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(warehouse), str(seconds), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    return proc


def _wait_held(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"


def test_a_second_run_exits_at_once_naming_the_holder(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    holder = _holder(tmp_path / "warehouse.duckdb", 60)
    try:
        _wait_held(holder)
        started = time.monotonic()
        result = run_orchestrator("--config", str(config), timeout=60)
        assert time.monotonic() - started < 30
        assert result.returncode == 1
        assert f"another run holds {lock_path(tmp_path / 'warehouse.duckdb')}: pid {holder.pid}" in result.stderr
        assert "--wait" in result.stderr
        assert not (tmp_path / "landing").exists()  # nothing ran
    finally:
        holder.kill()
        holder.wait()


def test_with_wait_a_second_run_waits_for_the_holder(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    first = _holder(warehouse, 2)
    _wait_held(first)
    second = _holder(warehouse, 0, "--wait")
    assert second.stdout is not None
    assert f"held by pid {first.pid}" in second.stdout.readline()
    assert first.wait(timeout=30) == 0
    assert second.stdout.readline().strip() == "held"  # only once the first let go
    assert second.wait(timeout=30) == 0


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    first = _holder(warehouse, 60)
    _wait_held(first)
    first.kill()
    first.wait()
    second = _holder(warehouse, 0)
    _wait_held(second)
    assert second.wait(timeout=30) == 0


def test_runs_that_died_are_marked_killed(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    records.start_pipeline(warehouse, "dead", "run")
    records.start_stage(warehouse, "dead", "train", "k", {}, "never ran")
    assert records.mark_killed(warehouse, "next") == 1
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select status, error from ops.pipeline_runs").fetchall() == [
            ("killed", "the process ended without finishing (killed); marked by run next")]
        assert con.execute("select status from ops.stage_runs").fetchall() == [("killed",)]
    assert records.last_executions(warehouse)["train"].status == "killed"  # so the engine reruns it
