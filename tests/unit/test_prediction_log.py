import json
import os
from pathlib import Path

import duckdb

from serving.prediction_log import PredictionLog, PredictionLogOptions, log_lines


def _lines(n: int, request_id: str = "r1") -> bytes:
    records = [{"id": f"t{i}", "amount": float(i), "at": "2026-01-01T00:00:00Z"} for i in range(n)]
    return log_lines(request_id, "m" * 64, records, [{"score": i / 10, "label": i % 2} for i in range(n)])


def test_lines_carry_request_time_model_inputs_and_scores() -> None:
    lines = [json.loads(line) for line in _lines(2).decode().splitlines()]
    assert [line["record_index"] for line in lines] == [0, 1]
    first = lines[0]
    assert first["request_id"] == "r1" and first["model_id"] == "m" * 64
    assert first["inputs"]["id"] == "t0" and first["score"] == 0.0 and first["label"] == 0
    assert first["logged_at"].endswith("Z")


def test_files_rotate_by_size_without_splitting_lines_and_dbt_duckdb_can_read_them(tmp_path: Path) -> None:
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, max_file_bytes=2000, fsync_interval_s=0))
    for i in range(20):
        log.append(_lines(3, f"r{i}"))
    log.close()
    files = sorted(tmp_path.glob("predictions-*.jsonl"))
    assert len(files) > 3
    assert all(f.stat().st_size <= 2000 or f.read_text().count("\n") == 3 for f in files)
    rows = duckdb.sql(f"select request_id, record_index, inputs.amount, score from read_json('{tmp_path}/*.jsonl', "
                      "format = 'newline_delimited')").fetchall()
    assert len(rows) == 60 and ("r19", 2, 2.0, 0.2) in rows


def test_files_rotate_by_age(tmp_path: Path) -> None:
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, max_file_age_s=0.0, fsync_interval_s=0.05))
    log.append(_lines(1))
    log.append(_lines(1))
    log.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_append_reaches_the_kernel_before_it_returns(tmp_path: Path) -> None:
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, fsync_interval_s=3600))
    log.append(_lines(2))
    # Another reader sees the bytes with no flush or close on our side: a SIGKILL now would keep them.
    assert os.path.getsize(log.path) == len(_lines(2)) or log.path.read_text().count("\n") == 2
    log.close()
