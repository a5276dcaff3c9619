"""One timestamp grammar on both sides: the server's validator and the monitoring staging (a real
dbt run of stg_serving__prediction_log_lines, and the dbt-compiled utc_timestamp macro run by
DuckDB) accept exactly the same generated strings and read the same instant from each."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from orchestration.dbt import DbtContext, compile_inline
from serving.bundle import InputField
from serving.errors import InputValidationError
from serving.prediction_log import PredictionLog, PredictionLogOptions, encode_log_line, records_json
from serving.predictor import Predictions
from serving.schema import records_to_request
from serving.timestamps import parse_timestamp, timestamps_json

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FIELDS = (InputField("txn_id", "string", False), InputField("txn_ts", "timestamp", True),
          InputField("amount", "double", False))
NAMED = ["2026-02-01T10:00:00+14:00", "2026-02-01T10:00:00-12:00", "2026-W05-5", "2026-W05", "2026-032",
         "20260201T100000", "20260201", "2026-02-01t10:00:00", "2026-02-01T10:00:00z", "2026-02-01 10:00:00",
         "2026-02-01T10:00:00\0", "2026-02-01T10:00:00\n", " 2026-02-01T10:00:00", "2026-02-01T10:00",
         "2026-02-01T10", "2026-02-01T10:00:00.1234567", "2026-02-01T10:00:00,5", "2026-02-01T10:00:00+0530",
         "2026-02-01T10:00:00+05", "2026-02-01T10:00:00+05:30:15", "2026-02-01T10:00:00+24:00",
         "2026-02-01T10:00:00+05:60", "2026-02-29T00:00:00", "2028-02-29T00:00:00", "2026-02-01T24:00:00",
         "2026-02-01T23:59:60", "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00-00:01", "0000-01-01",
         "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59-00:01", "2026-02-01", "2026-0٢-01", ""]


def _generated(n: int, seed: int = 20) -> list[str]:
    """Strings near the grammar: each part right most of the time (93%), else one of its usual mistakes."""
    rng = random.Random(seed)

    def pick(good: str, *bad: str) -> str:
        return good if rng.random() < 0.93 else rng.choice(bad)

    out = []
    for _ in range(n):
        year = pick(f"{rng.choice([1, 2, 1969, 2026, 9998, 9999, rng.randint(1, 9999)]):04d}", "0000", "26", "20260")
        month = pick(f"{rng.randint(1, 12):02d}", "00", "13", "1")
        day = pick(f"{rng.randint(1, 31):02d}", "00", "32", "7")
        sep = pick("-", "", "/")
        date = f"{year}{sep}{month}{sep}{day}"
        if rng.random() < 0.15:
            out.append(date + pick("", "\0", " ", "Z"))
            continue
        time = ":".join([pick(f"{rng.randint(0, 23):02d}", "24", "7"), pick(f"{rng.randint(0, 59):02d}", "60"),
                         pick(f"{rng.randint(0, 59):02d}", "60", "")]).rstrip(":")
        fraction = pick(rng.choice(["", "." + "".join(rng.choices("0123456789", k=rng.randint(1, 6)))]),
                        ".1234567", ",5", ".")
        offset = pick(rng.choice(["", "Z", "z", f"{rng.choice('+-')}{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
                                  "+14:00", "-12:00"]), "+24:00", "+05:60", "+0530", "+05", "+05:30:15", "UTC")
        text = date + pick(rng.choice("Tt "), "", "_") + time + fraction + offset + pick("", "\0", "\n", " ", "x")
        out.append(text if rng.random() > 0.01 else text.replace("1", "١"))
    return out


def _server_reading(text: str) -> dt.datetime | None:
    """What the server's validator makes of the string (one record, then the same as a batch's column)."""
    try:
        one = records_to_request([{"txn_id": "t", "txn_ts": text, "amount": 1.0}], FIELDS).values("txn_ts")[0]
    except InputValidationError:
        one = None
    try:
        expected = parse_timestamp(text)
    except ValueError:
        expected = None
    assert one == expected, text
    return one


@pytest.fixture(scope="module")
def strings() -> list[str]:
    return list(dict.fromkeys(NAMED + _generated(3000)))


@pytest.fixture(scope="module")
def dbt_context(tmp_path_factory: pytest.TempPathFactory) -> DbtContext:
    root = tmp_path_factory.mktemp("grammar")
    return DbtContext(project_dir=REPO / "dbt_project", warehouse=root / "w.duckdb", landing=root / "landing",
                      target_dir=root / "target", log_dir=root / "logs", vars={})


def test_the_server_and_the_staging_macro_accept_and_read_the_same_strings(strings: list[str],
                                                                          dbt_context: DbtContext) -> None:
    expression = compile_inline(dbt_context, "{{ utc_timestamp('t') }}")
    with duckdb.connect() as con:
        rows = con.execute(f"select t, {expression} from (select unnest(?::varchar[]) as t)", [strings]).fetchall()
    sql = dict(rows)
    server = {s: _server_reading(s) for s in strings}
    differ = [(s, server[s], sql[s]) for s in strings if server[s] != sql[s]]
    assert differ == [], differ[:10]
    accepted = sum(v is not None for v in server.values())
    assert 0.2 * len(strings) < accepted < 0.8 * len(strings), accepted  # both verdicts well represented
    assert server["2026-02-01T10:00:00+14:00"] == dt.datetime(2026, 1, 31, 20, 0)
    for refused in ("2026-W05-5", "20260201T100000", "2026-02-01T10:00:00\0", "2026-02-01T10:00:00+24:00"):
        assert server[refused] is None and sql[refused] is None


def test_a_dbt_run_of_the_staging_reads_what_the_server_logged(strings: list[str], dbt_context: DbtContext) -> None:
    """The server's log lines (timestamps_utc) and an older server's (the strings alone) both stage
    to the instant the server read; strings it refuses are flagged when an older line holds them."""
    logs = dbt_context.warehouse.parent / "prediction_logs"
    log = PredictionLog(PredictionLogOptions(directory=logs, fsync_interval_s=0))
    accepted = [s for s in strings if _server_reading(s) is not None]
    records = [{"txn_id": f"new-{i}", "txn_ts": s, "amount": 1.0} for i, s in enumerate(accepted)]
    for start, size in ((0, 1), (1, 5), (6, len(records) - 6)):  # value-by-value and Arrow requests alike
        part = records[start:start + size]
        request = records_to_request(part, FIELDS)
        scores = np.full(len(part), 0.5)
        log.append(encode_log_line(f"r{start}", "m" * 64, records_json(part),
                                   Predictions("m" * 64, "binary", scores, np.ones(len(part), np.int8)),
                                   timestamps=timestamps_json(request)))
    older = [{"txn_id": f"old-{i}", "txn_ts": s, "amount": 1.0} for i, s in enumerate(strings)]
    log.append(json.dumps({"request_id": "old", "logged_at": "2026-02-01T00:00:00Z", "model_id": "m0", "records": older,
                           "predictions": [{"score": 0.5, "label": 1}] * len(older)}).encode() + b"\n")
    log.close()
    env = {**dbt_context.env(), "PREDICTION_LOGS_PATH": str(logs)}
    result = subprocess.run([str(Path(sys.executable).with_name("dbt")), "run", "--select",
                             "stg_serving__prediction_log_lines"], cwd=dbt_context.project_dir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(dbt_context.warehouse), read_only=True) as con:
        staged = {key: (ts, reason) for key, ts, reason in con.execute(
            "select event_key, event_at, malformed_reason from staging.stg_serving__prediction_log_lines").fetchall()}
    assert len(staged) == len(records) + len(older)
    for i, text in enumerate(accepted):
        assert staged[f"new-{i}"] == (_server_reading(text), None), text
    for i, text in enumerate(strings):
        reading = _server_reading(text)
        flagged = None if reading is not None else f"records[{i}].txn_ts is not a timestamp"
        assert staged[f"old-{i}"] == (reading, flagged), text
    assert os.listdir(logs)  # the files were read where they were written
