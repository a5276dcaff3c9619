"""bench/serving.py's options, on the session's real registry (what it prints, not how fast)."""

import importlib.util
import os
from pathlib import Path

import pytest

from tests.conftest import PipelineRun

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serving.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_serving", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sql_path_in_process_only(pipeline_run: PipelineRun, capsys: pytest.CaptureFixture[str]) -> None:
    code = _bench().main(["--registry", str(pipeline_run.registry), "--landing", str(pipeline_run.landing),
                          "--path", "sql", "--no-http", "--iterations", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "features by the sql path" in out
    assert "in-process single record (dict)" in out and "in-process 10,000-record batch (Arrow)" in out
    assert "HTTP" not in out and "MLflow peer not run" not in out


def test_no_http_refuses_mlflow(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _bench().main(["--no-http", "--mlflow"])
    assert info.value.code == 2
    assert "--mlflow measures over HTTP; drop --no-http" in capsys.readouterr().err


def test_floors_bench_prints_each_floor(pipeline_run: PipelineRun, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_floors", BENCH.parent / "floors.py")
    floors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floors)
    code = floors.main(["--registry", str(pipeline_run.registry), "--landing", str(pipeline_run.landing), "--repeat", "20"])
    out = capsys.readouterr().out
    assert code == 0
    for row in ("DuckDB: select 1", "of which binding / optimizing (DuckDB profiler)", "as a prepared statement",
                "SQL path 10,000 rows: feature SQL + model alone", "ONNX Runtime: model alone, one row",
                "one more node", "x the model alone", "10,000 rows: fused / model alone"):
        assert row in out, row
    assert ("intra-op threads (rows/s)" in out) == (len(os.sched_getaffinity(0)) > 1)
