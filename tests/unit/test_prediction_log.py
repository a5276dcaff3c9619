import datetime as dt
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import serving.prediction_log as prediction_log
from serving.prediction_log import (PredictionLog, PredictionLogOptions, encode_log_line, log_line, logged_predictions,
                                    records_json)
from serving.predictor import Predictions


def _lines(n: int, request_id: str = "r1") -> bytes:
    records = [{"id": f"t{i}", "amount": float(i), "at": "2026-01-01T00:00:00Z"} for i in range(n)]
    return log_line(request_id, "m" * 64, records, [{"score": i / 10, "label": i % 2} for i in range(n)])


def test_a_line_carries_request_time_model_inputs_and_scores(tmp_path: Path) -> None:
    line = json.loads(_lines(2))
    assert list(line) == ["request_id", "logged_at", "model_id", "records", "predictions"]
    assert line["request_id"] == "r1" and line["model_id"] == "m" * 64 and line["logged_at"].endswith("Z")
    assert [r["id"] for r in line["records"]] == ["t0", "t1"]
    assert line["predictions"] == [{"score": 0.0, "label": 0}, {"score": 0.1, "label": 1}]
    earlier = {"request_id": "r0", "logged_at": "2026-01-01T00:00:00Z", "model_id": "m", "record_index": 3,
               "inputs": {"id": "t9"}, "score": 0.5, "label": 1}  # a line of the one-record format
    (tmp_path / "predictions-1.jsonl").write_bytes(json.dumps(earlier).encode() + b"\n" + _lines(2) + b"\n" + _lines(1, "r2"))
    read = list(logged_predictions(sorted(tmp_path.glob("*.jsonl"))))
    assert [(p["request_id"], p["record_index"], p["inputs"]["id"], p["score"]) for p in read] == \
        [("r0", 3, "t9", 0.5), ("r1", 0, "t0", 0.0), ("r1", 1, "t1", 0.1), ("r2", 0, "t0", 0.0)]


def test_files_rotate_by_size_without_splitting_lines_and_dbt_duckdb_can_read_them(tmp_path: Path) -> None:
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, max_file_bytes=2000, fsync_interval_s=0))
    for i in range(20):
        log.append(_lines(3, f"r{i}"))
    log.close()
    files = sorted(tmp_path.glob("predictions-*.jsonl"))
    assert len(files) > 3
    assert all(f.stat().st_size <= 2000 or f.read_text().count("\n") == 1 for f in files)
    rows = duckdb.sql(f"select request_id, unnest(records).amount, unnest(predictions).score "
                      f"from read_json('{tmp_path}/*.jsonl', format = 'newline_delimited')").fetchall()
    assert len(rows) == 60 and ("r19", 2.0, 0.2) in rows


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
    assert os.path.getsize(log.path) == len(_lines(2)) or log.path.read_text().count("\n") == 1
    log.close()


def test_appends_go_on_while_the_disk_is_slow_to_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, max_file_bytes=300, fsync_interval_s=3600))
    real_fsync, entered, release = os.fsync, threading.Event(), threading.Event()

    def slow_fsync(fd: int) -> None:  # a disk that takes its time, as a busy one does
        entered.set()
        release.wait(10)
        real_fsync(fd)

    log.append(_lines(1))
    monkeypatch.setattr(prediction_log.os, "fsync", slow_fsync)
    syncing = threading.Thread(target=log.sync)
    syncing.start()
    assert entered.wait(5)
    started = time.monotonic()
    for i in range(5):  # past max_file_bytes: rotations too, while the fsync is still running
        log.append(_lines(2, f"r{i}"))
    assert time.monotonic() - started < 2 and syncing.is_alive()
    release.set()
    syncing.join(5)
    monkeypatch.setattr(prediction_log.os, "fsync", real_fsync)
    log.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) > 2 and len(list(logged_predictions(files))) == 11


def test_rotated_files_are_fsynced_and_closed_by_the_syncer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(prediction_log.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd)))
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, max_file_bytes=300, fsync_interval_s=3600))
    open_before = len(os.listdir("/proc/self/fd"))
    for i in range(6):
        log.append(_lines(2, f"r{i}"))
    assert synced == []  # nothing waited for the disk while appending
    log.sync()
    inodes = {f.stat().st_ino for f in tmp_path.glob("*.jsonl")}
    # every file, the rotated-out ones included, and the folder that holds their names
    assert len(inodes) > 2 and set(synced) == inodes | {tmp_path.stat().st_ino}
    assert len(os.listdir("/proc/self/fd")) == open_before  # their descriptors are closed
    log.close()


# --- the fast encoder the server uses writes the reference encoder's values ------------------------


TRICKY_TEXT = ["é", "\u2028\u2029", "😀 and \U0010ffff", "\x7f", "\x00\x01\x1f\t\n\r\b\f", '"\\/', "},{", '"},{"',
               "e-commerce", "0.00001", "x\u00a0y", ""]
TRICKY_NUMBERS = [0, -0.0, 1e-05, 9e-05, 0.0001, 0.00012, 1.5e-7, 5e-324, 1e16, 1.2345678901234568e+17, 1e300,
                  470.9, 0.1, 2**63 - 1, -(2**63), 2**64 + 1, 10**30, True, False, None]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prediction_log, "_utc_now", lambda: dt.datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=dt.timezone.utc))


def _binary(scores: list[float]) -> Predictions:
    array = np.asarray(scores, dtype=np.float64)
    return Predictions("m" * 64, "binary", array, (array >= 0.5).astype(np.int8))


def _typed(value: Any) -> Any:
    """A parsed JSON value with each number's type kept (1 and 1.0 differ), keys in order."""
    if isinstance(value, dict):
        return [(k, _typed(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


def _same_lines(records: list[dict], predictions: Predictions, request_id: str = "req-1") -> bytes:
    """The fast line, after checking it holds the reference's values."""
    expected = log_line(request_id, predictions.model_id, records, predictions.to_records())
    fast = encode_log_line(request_id, predictions.model_id, records_json(records), predictions)
    assert fast.endswith(b"\n") and fast.count(b"\n") == 1
    assert _typed(json.loads(fast)) == _typed(json.loads(expected))
    return fast


def test_fast_encoder_writes_the_reference_values_for_tricky_values(fixed_clock: None) -> None:
    records = [{"text": t, "number": n, "null": None, "ts": "2026-03-01T00:00:31Z"}
               for t, n in zip(TRICKY_TEXT * 2, TRICKY_NUMBERS)]
    records += [{"text": t, "number": 1} for t in TRICKY_TEXT]  # text alone, no float re-encoded next to it
    scores = [1e-7, 0.5, 0.99999, 3.2e-05, 0.0, 1.0, 0.25, 1e-300, 0.0001, 0.7] * 4
    parsed = json.loads(_same_lines(records, _binary(scores[:len(records)])))["records"]
    assert [p["text"] for p in parsed] == [r["text"] for r in records]
    assert parsed[15]["number"] == 2**64 + 1 and isinstance(parsed[15]["number"], int)  # via the reference
    assert parsed[1]["number"] == 0.0 and isinstance(parsed[1]["number"], float)


def test_fast_encoder_on_a_large_batch_with_a_few_odd_records(fixed_clock: None) -> None:
    records = [{"id": f"tx_{i:09d}", "amount": 470.9 + i / 7, "category": None if i % 3 else "electronics"}
               for i in range(1000)]
    records[17]["category"] = "ünïcode"
    records[512]["amount"] = 4e-05
    records[999]["id"] = "},{"
    line = _same_lines(records, _binary(list(np.random.default_rng(0).random(1000) ** 6)))
    assert line.count(b'"request_id"') == 1  # the head once per request, not per record


def test_fast_lines_are_written_by_orjson_and_duckdb_reads_their_utf8(tmp_path: Path, fixed_clock: None) -> None:
    records = [{"id": f"t{i}", "text": text, "amount": 1e-05 * i} for i, text in enumerate(["é", "😀", "\u2028", "plain"])]
    line = _same_lines(records, _binary([0.1, 0.2, 0.7, 3e-05]))
    assert b'"records":[{"id":"t0","text":"\xc3\xa9"' in line  # compact, UTF-8: the fast path
    log = PredictionLog(PredictionLogOptions(directory=tmp_path, fsync_interval_s=0))
    log.append(line)
    log.close()
    rows = duckdb.sql(f"select unnest(records).text, unnest(records).amount, unnest(predictions).score "
                      f"from read_json('{tmp_path}/*.jsonl', format = 'newline_delimited')").fetchall()
    assert rows == [(r["text"], r["amount"], s) for r, s in zip(records, [0.1, 0.2, 0.7, 3e-05])]


def test_fast_encoder_writes_float32_scores_near_1e_4_as_the_reference(fixed_clock: None) -> None:
    # ONNX Runtime gives float32 probabilities; the written digits are those of the doubles.
    below = np.nextafter(np.float32(1e-4), np.float32(0))
    scores = np.array([below, np.float32(1e-4), np.nextafter(np.float32(1e-4), np.float32(1)), 1e-5, 0.3],
                      dtype=np.float32)
    _same_lines([{"a": i} for i in range(len(scores))],
                Predictions("m", "binary", scores, (scores >= 0.5).astype(np.int8)))


def test_fast_encoder_refuses_a_non_finite_score_like_the_reference(fixed_clock: None) -> None:
    with pytest.raises(ValueError):
        log_line("r", "m", [{"a": 1}], _binary([float("nan")]).to_records())
    with pytest.raises(ValueError):
        encode_log_line("r", "m", records_json([{"a": 1}]), _binary([float("nan")]))


def test_fast_encoder_for_multiclass_and_regression_outputs(fixed_clock: None) -> None:
    records = [{"a": "x"}, {"a": "é"}, {"a": "},{"}]
    _same_lines(records, Predictions("m", "regression", np.array([1e-05, 12.5, -3.0]), None))
    _same_lines(records, Predictions("m", "multiclass", np.array([[0.2, 0.8], [1e-6, 1 - 1e-6], [0.5, 0.5]]),
                                     np.array(["b", "a", "a"], dtype=object), ["a", "b"]))


def test_fast_encoder_hands_what_orjson_refuses_to_the_reference(fixed_clock: None) -> None:
    # datetimes (str() by the reference), str subclasses and non-str keys: never in validated JSON,
    # and still the same values.
    class Name(str):
        pass

    for odd in ({"at": dt.datetime(2026, 1, 1, 10, 0)}, {"name": Name("x")}, {1: "one"}):
        _same_lines([{"a": 1}, odd, {"a": 2}], _binary([0.1, 0.2, 0.3]))


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=6), scalars, max_size=5), min_size=1, max_size=20),
       st.lists(st.floats(min_value=0, max_value=1), min_size=20, max_size=20))
def test_fast_encoder_matches_the_reference_on_any_json_record(records: list[dict], scores: list[float]) -> None:
    predictions = _binary(scores[:len(records)])
    fixed = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    original, prediction_log._utc_now = prediction_log._utc_now, lambda: fixed
    try:
        _same_lines(records, predictions, "r")
    finally:
        prediction_log._utc_now = original


# --- the answer's predictions are written from the arrays too -------------------------------------

def test_predictions_to_json_holds_to_records_values() -> None:
    scores = np.array([1e-7, 0.5, 0.99999, 3.2e-05, 0.0, 1.0], dtype=np.float32)
    for predictions in (Predictions("m", "binary", scores, (scores >= 0.5).astype(np.int8)),
                        Predictions("m", "regression", np.array([1e-05, 12.5, -3.0]), None),
                        Predictions("m", "multiclass", np.array([[0.2, 0.8], [1e-6, 1 - 1e-6]]),
                                    np.array(["b", "a"], dtype=object), ["a", "b"])):
        assert _typed(json.loads(predictions.to_json())) == _typed(predictions.to_records())
    with pytest.raises(ValueError, match="NaN or infinite"):
        _binary([0.2, float("nan")]).to_json()
