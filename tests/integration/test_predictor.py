"""The embeddable Predictor on the session's real bundle: inputs, thread safety, lock-down, injection."""

import threading
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from serving import Predictor
from serving.errors import InputValidationError
from tests.conftest import PipelineRun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor(pipeline_run: PipelineRun):
    p = Predictor.load(pipeline_run.registry, record=False)  # the session's store is shared: left as landed
    yield p
    p.close()


def test_list_of_dicts_dataframe_and_arrow_give_the_same_predictions(predictor: Predictor, raw_records: list[dict]) -> None:
    import pandas as pd

    expected = predictor.predict(raw_records)
    assert expected.model_id == predictor.model_id and len(expected.scores) == len(raw_records)
    assert set(np.unique(expected.labels)) <= {0, 1}
    frame = pd.DataFrame(raw_records)
    frame["txn_ts"] = pd.to_datetime(frame["txn_ts"])
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for given in (frame, table, frame.assign(txn_ts=frame["txn_ts"].dt.tz_localize("UTC"))):
        got = predictor.predict(given)
        np.testing.assert_array_equal(got.scores, expected.scores)
        np.testing.assert_array_equal(got.labels, expected.labels)
    with pytest.raises(InputValidationError, match="field 'amount'"):
        predictor.predict(frame.assign(amount=frame["amount"].astype(str)))
    with pytest.raises(InputValidationError, match="field 'amount'"):
        predictor.predict(table.set_column(table.schema.get_field_index("amount"), "amount",
                                           pa.array([float("nan")] * table.num_rows)))


def test_predict_is_thread_safe(predictor: Predictor, raw_records: list[dict]) -> None:
    rng = np.random.default_rng(3)
    batches = [[raw_records[i] for i in rng.choice(len(raw_records), size=int(rng.integers(1, 40)))] for _ in range(160)]
    serial = [predictor.predict(b).scores for b in batches]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(k, len(batches), 8):
                results[i] = predictor.predict(batches[i]).scores
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for i, want in enumerate(serial):
        np.testing.assert_array_equal(results[i], want)


@pytest.mark.parametrize("probe", [
    "select * from read_csv('/etc/passwd')",
    "select * from glob('/etc/*')",
    "attach '{tmp}/other.duckdb' as other",
    "attach ':memory:' as scratch",
    "pragma enable_profiling",
    "set enable_profiling = 'json'",
    "select 1; attach ':memory:' as scratch",
    "install httpfs",
    "load httpfs",
    "copy (select 42) to '{tmp}/leak.csv'",
    "set lock_configuration = false",
    "reset lock_configuration",
    "set enable_external_access = true",
    "set autoload_known_extensions = true",
    "set allow_unsigned_extensions = true",
    "set memory_limit = '64GB'",
    "set threads = 64",
])
def test_serving_duckdb_refuses_each_escape(predictor: Predictor, probe: str, tmp_path: Path) -> None:
    with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException)):
        predictor._engine.cursor().execute(probe.format(tmp=tmp_path)).fetchall()
    assert not list(tmp_path.iterdir())  # nothing was written


def test_serving_duckdb_limits_are_in_force(predictor: Predictor) -> None:
    settings = dict(predictor._engine.cursor().execute(
        "select name, value from duckdb_settings() where name in "
        "('enable_external_access', 'lock_configuration', 'threads', 'autoload_known_extensions', 'autoinstall_known_extensions')"
    ).fetchall())
    assert settings == {"enable_external_access": "false", "lock_configuration": "true", "threads": "1",
                        "autoload_known_extensions": "false", "autoinstall_known_extensions": "false"}
    limit = predictor._engine.cursor().execute("select current_setting('memory_limit')").fetchone()[0]
    assert limit.endswith("MiB") and float(limit.split()[0]) < 600


INJECTIONS = [
    "'; drop table fitted_category_vocab; --",
    "x' or '1'='1",
    "') union all select * from read_csv('/etc/passwd') --",
    "\"; attach '/tmp/evil.duckdb' as e; --",
    "$1",
    "?",
    "{{ config(materialized='table') }}",
    "electronics'--",
    "\\x00null-byte",  # the text of an escape; a real NUL is refused, see below
    "\u202e\ufeffunicode",
]


@pytest.mark.parametrize("field", ["merchant_category", "country_code", "currency_code", "channel", "device_type",
                                   "txn_id", "user_id", "merchant_id"])
def test_sql_injection_payloads_are_data(predictor: Predictor, raw_records: list[dict], field: str) -> None:
    base = raw_records[0]
    benign = predictor.predict([{**base, field: "zz-never-seen-value"}])
    # One event per payload (one event key with other values would be refused as a conflicting re-send).
    payloads = predictor.predict([{**base, "txn_id": f"{base['txn_id']}-{i}", field: p} for i, p in enumerate(INJECTIONS)])
    # An unseen category scores like any other unseen string: the payload was never SQL.
    np.testing.assert_array_equal(payloads.scores, np.repeat(benign.scores, len(INJECTIONS)))
    vocab = predictor._engine.cursor().execute("select count(*) from fitted_category_vocab").fetchone()[0]
    assert vocab == predictor.bundle.tables["fitted_category_vocab"].num_rows
    # A real NUL never reaches SQL or the fused model (where it marks NULL): refused, and named.
    with pytest.raises(InputValidationError, match=f"record 0, field '{field}': expected text without NUL"):
        predictor.predict([{**base, field: "a\x00b"}])
