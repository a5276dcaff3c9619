"""Differential fuzzing: generated expressions from the compiler's own grammar, on rows full of
edges (Unicode text, NaN-producing arithmetic, far years, integers past 2**53), must give
exactly what DuckDB gives, row by row, or be marked unsure where DuckDB raises an error.

Bounded in the suite; ``pytest tests/unit/test_fused_fuzz.py --long -s -n 0`` runs for
``FUSED_FUZZ_SECONDS`` (900 by default) and prints the counts recorded in docs/fused.md.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import time

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.fused import encode_inputs
from serving.schema import records_to_table
from tests.unit.fused_grammar import SCHEMA, expression, rows
from tests.unit.test_fused_compiler import _identity_model
from training.errors import FusedCompileError
from training.fused import compile_fused

STATS = pa.table({"mean": pa.array([2.5]), "cents": pa.array([decimal.Decimal("12.25")], pa.decimal128(18, 2)),
                  "count": pa.array([7], pa.int32()), "since": pa.array([dt.datetime(2026, 1, 1, 6)])})
ROWS = 120
COUNTS = {"examples": 0, "compiled": 0, "refused": 0, "cases": 0, "unsure_cases": 0, "duckdb_errors": 0}


def _sql(features: list[str]) -> str:
    select = ",\n".join(f"{f} as f{i}" for i, f in enumerate(features))
    return f"with t as (select * from request) select t.__row_id, {select} from t as t cross join stats as s order by t.__row_id"


def _duckdb(sql: str, request: pa.Table, width: int) -> tuple[list[list[float]] | None, list[bool]]:
    """DuckDB's answer per row (None where it raised), computed on the batch, else row by row."""
    con = duckdb.connect()
    con.register("stats", STATS)

    def run(table: pa.Table) -> list[list[float]]:
        con.register("request", table)
        out = con.execute(sql).fetch_arrow_table()
        return [out.column(c).to_numpy(zero_copy_only=False).astype(np.float64).tolist() for c in out.column_names[1:]]

    try:
        return run(request), [False] * request.num_rows
    except duckdb.Error:
        columns: list[list[float]] | None = None
        errors = []
        values = []
        for i in range(request.num_rows):
            try:
                values.append([col[0] for col in run(request.slice(i, 1))])
                errors.append(False)
            except duckdb.Error:
                values.append(None)
                errors.append(True)
        columns = [[np.nan if v is None else v[j] for v in values] for j in range(width)]
        return columns, errors
    finally:
        con.close()


def _same(got: np.ndarray, want: np.ndarray, approx: bool) -> np.ndarray:
    want32 = want.astype(np.float32)
    same = (got == want32) | (np.isnan(got) & np.isnan(want32))
    if approx:  # transcendental functions: ONNX Runtime's kernels against glibc, within an ulp of float32
        same |= np.abs(got.astype(np.float64) - want32.astype(np.float64)) <= np.abs(np.spacing(want32)).astype(np.float64)
        same |= np.isinf(got) & (got == want32)
    return same


def check(features: list[str], kinds: list[str], seed: int) -> None:
    COUNTS["examples"] += 1
    sql = _sql(features)
    try:
        fused = compile_fused(sql, SCHEMA, {"stats": STATS}, tuple(f"f{i}" for i in range(len(features))),
                              _identity_model(len(features)))
    except FusedCompileError:
        COUNTS["refused"] += 1  # outside the subset (or unprovable): the SQL path would serve
        return
    COUNTS["compiled"] += 1
    request = records_to_table(rows(seed, ROWS), SCHEMA)
    session = ort.InferenceSession(fused.onnx, providers=["CPUExecutionProvider"])
    got, unsure = session.run(["features", "unsure"], encode_inputs(request, fused.inputs))
    want, errors = _duckdb(sql, request, len(features))
    errors_arr = np.asarray(errors)
    COUNTS["duckdb_errors"] += int(errors_arr.sum())
    missed = errors_arr & ~unsure
    assert not missed.any(), (f"DuckDB raises for rows {np.flatnonzero(missed)[:5].tolist()} but the graph is sure\n"
                              f"{sql}\nrow: {request.slice(int(np.flatnonzero(missed)[0]), 1).to_pylist()}")
    assert want is not None
    for j, kind in enumerate(kinds):
        same = _same(got[:, j], np.asarray(want[j], dtype=np.float64), kind == "approx") | unsure
        COUNTS["cases"] += int((~unsure).sum())
        COUNTS["unsure_cases"] += int(unsure.sum())
        bad = np.flatnonzero(~same)
        assert not bad.size, (f"feature f{j} = {features[j]} differs on {bad.size} rows; first row "
                              f"{request.slice(int(bad[0]), 1).to_pylist()}: graph {got[bad[0], j]!r}, "
                              f"DuckDB {want[j][bad[0]]!r}")


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[str], list[str], int]:
    kinds = draw(st.lists(st.sampled_from(["num", "num", "int", "bool", "approx"]), min_size=1, max_size=3))
    features = []
    for kind in kinds:
        e = draw(expression(kind, depth=draw(st.integers(1, 4))))
        features.append(f"cast({e} as integer)" if kind == "bool" else e)
    return features, kinds, draw(st.integers(0, 2**31))


def _budget(request: pytest.FixtureRequest) -> tuple[int, float]:
    if request.config.getoption("--long"):
        return 100_000, float(os.environ.get("FUSED_FUZZ_SECONDS", "900"))
    return 60, 40.0


def test_generated_expressions_match_duckdb(request: pytest.FixtureRequest) -> None:
    examples, seconds = _budget(request)
    started = time.monotonic()

    @settings(max_examples=examples, deadline=None, derandomize=not request.config.getoption("--long"),
              suppress_health_check=list(HealthCheck), database=None)
    @given(_case())
    def run(case: tuple[list[str], list[str], int]) -> None:
        if time.monotonic() - started > seconds:
            return
        check(*case)

    run()
    print(f"\nfused fuzz: {COUNTS} in {time.monotonic() - started:.0f} s")
    assert COUNTS["compiled"] > COUNTS["refused"], COUNTS  # the grammar is the supported subset


@pytest.mark.parametrize("features", [
    # Found by the long run: 2**53 + 1 is 2**53 in float64, so t.i1 = 2**53 looked equal to it.
    ["cast((t.i1 in (0, 0, 9007199254740993)) as integer)"],
    ["cast((t.i1 = 9007199254740993) as integer)", "cast((t.i1 < -9007199254740993) as integer)"],
    # Found by the long run: a DECIMAL rescaled through int64 lost the NaN that marked a NULL.
    ["cast(cast(t.d1 as decimal(18, 2)) as bigint)", "cast(cast(t.d1 as decimal(18, 3)) as decimal(18, 1))"],
    # Found by the long run: round(-0.0) came back as +0.0, so 2.5 / round(d1) was +inf, not -inf.
    ["cast((t.d1 < (t.d2 / round(t.d1))) as integer)", "(t.d2 / round(t.d1, 1))"],
])
def test_cases_the_long_run_found(features: list[str]) -> None:
    for seed in range(4):
        check(features, ["num"] * len(features), seed)
