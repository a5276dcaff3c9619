"""The validate stage: warnings are recorded and reported but do not halt; errors halt and name the checks."""

from pathlib import Path

import duckdb
import pytest

from orchestration.checks import CheckResult
from orchestration.config import Paths, PipelineConfig
from orchestration.errors import StageError
from orchestration.context import RunState
from orchestration.engine import Engine
from orchestration.stages import STAGES, RunContext

VALIDATE = tuple(s for s in STAGES if s.name == "validate")


def _check(severity: str, passed: bool, column: str) -> CheckResult:
    return CheckResult(origin="dbt_test", table="staging.t", check="null_fraction_vs_baseline", column=column,
                       metric="null_fraction", severity=severity, status="pass" if passed else "fail", passed=passed,
                       expected="0.01", actual="0.4", segment="2026-01-09")


def _context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *results: CheckResult) -> tuple[RunContext, list[str]]:
    monkeypatch.delenv("WAREHOUSE_PATH", raising=False)
    lines: list[str] = []
    cfg = PipelineConfig(root=tmp_path, paths=Paths(warehouse=tmp_path / "w.duckdb"))
    state = RunState()
    state["checks"] = list(results)
    return RunContext(cfg=cfg, run_id="r1", echo=lines.append, state=state), lines


def run_stages(ctx: RunContext, stages: tuple) -> list:
    """The stages through the real engine (keys, records), with their inputs already in the state."""
    return [(d.stage, secs, summary) for d, secs, summary in Engine(ctx, stages).run()]


def _alerts(tmp_path: Path) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        return con.execute("select severity, checks from validation.alerts").fetchall()


def test_warnings_are_recorded_and_reported_without_halting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, lines = _context(tmp_path, monkeypatch, _check("error", True, "a"), _check("warn", False, "b"))
    ((_, _, summary),) = run_stages(ctx, VALIDATE)
    assert summary == {"checks": 2, "passed": 1, "warnings": 1, "errors": 0, "not_run": 0}
    assert any(line.startswith("WARN null_fraction_vs_baseline on staging.t.b: null_fraction on 2026-01-09 is 0.4")
               for line in lines)
    assert _alerts(tmp_path) == [("warn", ["null_fraction_vs_baseline on staging.t.b"])]


def test_a_failed_error_check_halts_and_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _ = _context(tmp_path, monkeypatch, _check("error", False, "a"), _check("warn", False, "b"))
    with pytest.raises(StageError, match="stage 'validate' failed: 1 error-severity check") as info:
        run_stages(ctx, VALIDATE)
    assert info.value.stage == "validate" and info.value.checks == ("null_fraction_vs_baseline on staging.t.a",)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("select column_name, severity, passed from validation.check_results order by 1").fetchall() == [
            ("a", "error", False), ("b", "warn", False)]
