"""The DAG engine on small stages of its own: keys, skips, resume, declared inputs, retries, records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration import records
from orchestration.config import Paths, PipelineConfig, Retry
from orchestration.context import RunContext, Stage
from orchestration.engine import Engine, Selection, transient_cause, with_retries
from orchestration.errors import StageError

CALLS: list[str] = []


def _produce(ctx: RunContext) -> dict[str, Any]:
    CALLS.append("produce")
    ctx.state["dbt_vars"] = {"value": ctx.cfg.seed % 2}  # only the parity of the seed reaches downstream
    return {"rows": 3}


def _consume(ctx: RunContext) -> dict[str, Any]:
    CALLS.append("consume")
    ctx.state["warnings"] = [f"saw {ctx.state['dbt_vars']['value']}"]
    return {}


def _sneaky(ctx: RunContext) -> dict[str, Any]:
    CALLS.append("sneaky")
    return {"peeked": ctx.state["fingerprint"]}


PRODUCE = Stage("produce", "makes a value", (), ("dbt_vars",), _produce, config=("seed",))
CONSUME = Stage("consume", "reads it", ("dbt_vars",), ("warnings",), _consume)


def _ctx(tmp_path: Path, seed: int = 1, run_id: str = "r1") -> RunContext:
    cfg = PipelineConfig(root=tmp_path, paths=Paths(warehouse=tmp_path / "w.duckdb", artifacts=tmp_path / "a"), seed=seed)
    return RunContext(cfg=cfg, run_id=run_id, echo=lambda _: None)


def _run(tmp_path: Path, stages: tuple[Stage, ...], seed: int = 1, selection: Selection = Selection(),
         run_id: str = "r1") -> dict[str, str]:
    CALLS.clear()
    ctx = _ctx(tmp_path, seed, run_id)
    return {d.stage: ("ran" if d.run else "skipped: " + d.reason) for d, _, _ in Engine(ctx, stages, selection).run()}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WAREHOUSE_PATH", "ARTIFACTS_PATH", "LANDING_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_unchanged_stages_are_skipped_and_a_changed_config_reruns_only_what_reads_it(tmp_path: Path) -> None:
    assert _run(tmp_path, (PRODUCE, CONSUME)) == {"produce": "ran", "consume": "ran"}
    second = _run(tmp_path, (PRODUCE, CONSUME), run_id="r2")
    assert CALLS == [] and second["consume"] == "skipped: unchanged since run r1"
    # seed 3 changes produce's key, but its output (the seed's parity) is the same: consume is skipped.
    assert _run(tmp_path, (PRODUCE, CONSUME), seed=3, run_id="r3")["consume"].startswith("skipped")
    assert CALLS == ["produce"]
    # seed 4 changes the output, so consume reruns.
    _run(tmp_path, (PRODUCE, CONSUME), seed=4, run_id="r4")
    assert CALLS == ["produce", "consume"]


def test_a_skipped_stage_hands_its_persisted_outputs_to_a_forced_one(tmp_path: Path) -> None:
    _run(tmp_path, (PRODUCE, CONSUME))
    result = _run(tmp_path, (PRODUCE, CONSUME), selection=Selection(only="consume"), run_id="r2")
    assert CALLS == ["consume"] and result["consume"] == "ran"
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        statuses = con.execute("select run_id, stage, status from ops.stage_runs order by started_at").fetchall()
    assert statuses == [("r1", "produce", "succeeded"), ("r1", "consume", "succeeded"), ("r2", "consume", "succeeded")]


def test_only_a_stage_whose_inputs_never_succeeded_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="stage 'produce' has no successful execution"):
        _run(tmp_path, (PRODUCE, CONSUME), selection=Selection(only="consume"))


def test_an_interrupted_stage_is_rerun_and_finished_ones_are_not(tmp_path: Path) -> None:
    _run(tmp_path, (PRODUCE, CONSUME))
    # What a SIGKILL mid-stage leaves behind: the stage's row still says running.
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("update ops.stage_runs set status = 'running' where stage = 'consume'")
    result = _run(tmp_path, (PRODUCE, CONSUME), run_id="r2")
    assert CALLS == ["consume"] and result["produce"].startswith("skipped")


def test_deleted_outputs_rerun_the_stage(tmp_path: Path) -> None:
    _run(tmp_path, (PRODUCE, CONSUME))
    for path in (tmp_path / "a" / "stages" / "produce").glob("*.json"):
        path.unlink()
    _run(tmp_path, (PRODUCE, CONSUME), run_id="r2")
    assert CALLS == ["produce"]


def test_reading_an_undeclared_input_is_refused(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.state["fingerprint"] = {"rows": 1}
    stage = Stage("sneaky", "reads what it does not declare", (), (), _sneaky)
    with pytest.raises(RuntimeError, match=r"read \['fingerprint'\] without declaring"):
        Engine(ctx, (stage,)).run()


def test_unknown_stage_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="unknown stage 'nope'; stages are: produce, consume"):
        Engine(_ctx(tmp_path), (PRODUCE, CONSUME), Selection(from_stage="nope"))


LOCKED = duckdb.IOException('IO Error: Could not set lock on file "/w.duckdb": Conflicting lock is held in '
                            '/usr/bin/python3 (PID 999999999) by user root.')


def test_transient_errors_are_retried_with_backoff_and_others_fail_fast() -> None:
    calls, lines = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise LOCKED
        return "ok"

    assert with_retries(flaky, Retry(attempts=4, backoff_seconds=0.01), "dbt_build", lines.append) == ("ok", 3)
    assert len(lines) == 2 and "attempt 2/4 in 0.01s" in lines[0] and "attempt 3/4 in 0.02s" in lines[1]

    def broken() -> None:
        calls.append(1)
        raise ValueError("column amount: expected double, got varchar")

    calls.clear()
    with pytest.raises(ValueError, match="expected double"):
        with_retries(broken, Retry(attempts=4, backoff_seconds=0.01), "ingest", lines.append)
    assert len(calls) == 1


def test_a_spent_retry_budget_names_the_lock_holder(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(60)", str(warehouse)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.Error) as info:
            with_retries(lambda: records.last_executions(warehouse), Retry(attempts=2, backoff_seconds=0.05),
                         "records", lambda _: None)
    finally:
        holder.kill()
        holder.wait()
    message = str(info.value)
    assert f"locked by another process: PID {holder.pid} (" in message and "time.sleep(60)" in message
    assert "gave up after 2 attempt(s)" in message
    assert transient_cause(ValueError("no such column")) is None


def test_slow_stages_and_volume_drops_are_reported(tmp_path: Path) -> None:
    assert records.slow_stage_warning("train", 40.0, [10.0, 11.0, 12.0]).startswith(
        "pipeline health: stage train took 40.0s, 3.6x the median 11.0s")
    assert records.slow_stage_warning("train", 40.0, [10.0, 11.0]) is None  # too little history
    assert records.slow_stage_warning("parse", 4.0, [1.0, 1.0, 1.0]) is None  # small stages are noisy
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema raw; create table raw.ingestion_log (file_name varchar, partition_date date, "
                    "count_rows bigint)")
        con.execute("insert into raw.ingestion_log select strftime(d, '%Y-%m-%d') || '.parquet', d, "
                    "case when d = date '2026-01-09' then 300 else 1000 end "
                    "from range(date '2026-01-01', date '2026-01-11', interval 1 day) t(d)")
    (warning,) = records.volume_warnings(warehouse, ["2026-01-09.parquet", "2026-01-10.parquet"])
    assert warning.startswith("pipeline health: partition 2026-01-09.parquet has 300 rows, 30% of the trailing median")


def test_persisted_outputs_keep_key_order_and_digests_see_column_order(tmp_path: Path) -> None:
    from orchestration.outputs import OutputStore, dbt_logic_digest

    # A manifest's column order is the model's feature order: storing must not sort it away...
    manifest = {"metadata": {"project_name": "p"}, "macros": {}, "sources": {}, "nodes": {
        "model.p.f": {"checksum": {"checksum": "x"}, "tags": [], "columns": {"b": {"name": "b"}, "a": {"name": "a"}}}}}
    store = OutputStore(tmp_path)
    store.write("parse", "k1", {"manifest": manifest})
    assert list(store.read("parse", "k1")["manifest"]["nodes"]["model.p.f"]["columns"]) == ["b", "a"]
    # ...and reordering columns changes the logic digest, so the stages that depend on it rerun.
    swapped = {**manifest, "nodes": {"model.p.f": {**manifest["nodes"]["model.p.f"],
                                                   "columns": {"a": {"name": "a"}, "b": {"name": "b"}}}}}
    assert dbt_logic_digest(manifest) != dbt_logic_digest(swapped)


def test_a_long_stage_reports_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from orchestration import engine

    monkeypatch.setattr(engine, "PROGRESS_EVERY_S", 0.05)
    lines: list[str] = []
    ctx = _ctx(tmp_path)
    ctx.echo = lines.append
    slow = Stage("slow", "takes a while", (), (), lambda c: time.sleep(0.3) or {})
    Engine(ctx, (slow,)).run()
    assert any(line.startswith("[slow] still running: ") for line in lines), lines


@pytest.mark.parametrize("command", ["run", "plan", "backfill", "watch", "runs", "promote", "rollback", "simulate",
                                     "demo-data"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestration.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and f"orchestrate.py {command}" in capsys.readouterr().out


def test_the_training_digest_covers_the_macros_training_uses_and_no_monitoring_one() -> None:
    from orchestration.outputs import dbt_logic_digest

    def manifest(**sql: str) -> dict:
        macros = {f"macro.p.{name}": {"name": name, "package_name": "p", "macro_sql": body,
                                      "depends_on": {"macros": ["macro.p.helper"] if name == "features" else []}}
                  for name, body in sql.items()}
        return {"metadata": {"project_name": "p"}, "sources": {}, "macros": macros, "nodes": {
            "model.p.mart": {"checksum": {"checksum": "a"}, "tags": [], "depends_on": {"macros": ["macro.p.features"]}},
            "model.p.drift": {"checksum": {"checksum": "b"}, "tags": ["monitoring"],
                              "depends_on": {"macros": ["macro.p.psi"]}}}}

    base = dict(features="f", helper="h", psi="p", generate_schema_name="g", serving_features="s")
    digest = dbt_logic_digest(manifest(**base))
    assert dbt_logic_digest(manifest(**{**base, "psi": "p2"})) == digest  # only monitoring uses it
    assert dbt_logic_digest(manifest(**{**base, "helper": "h2"})) != digest  # used through `features`
    assert dbt_logic_digest(manifest(**{**base, "generate_schema_name": "g2"})) != digest  # called by dbt itself
    assert dbt_logic_digest(manifest(**{**base, "serving_features": "s2"})) == digest  # no model calls it...
    assert dbt_logic_digest(manifest(**{**base, "serving_features": "s2"}), extra_macros=("serving_features",)) != \
        dbt_logic_digest(manifest(**base), extra_macros=("serving_features",))  # ...but the bundle compiles it
    assert dbt_logic_digest(manifest(**{**base, "psi": "p2"}), tag="monitoring") != \
        dbt_logic_digest(manifest(**base), tag="monitoring")
