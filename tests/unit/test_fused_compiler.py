"""The SQL-to-ONNX compiler against DuckDB itself, construct by construct, with SQL NULLs."""

import datetime as dt

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pytest
from onnx import TensorProto, helper

from serving.bundle import InputField
from serving.fused import encode_inputs
from serving.schema import records_to_table
from training.errors import FusedCompileError
from training.fused import compile_fused

SCHEMA = (
    InputField("id", "string", False),
    InputField("at", "timestamp", True),
    InputField("amount", "double", True),
    InputField("n", "integer", True),
    InputField("category", "string", True),
    InputField("user", "string", True),
)
STATS = pa.table({"mean": [2.0], "clip": [100.0]})
VOCAB = pa.table({"feature_name": ["category", "category", "other"], "category": ["grocery", "travel", "grocery"],
                  "category_index": [1, 2, 9]})
STATE = pa.table({"user_id": ["u1", "u2"], "txn_count": [3, None], "last_at": [dt.datetime(2026, 1, 1), None],
                  "known": [["grocery", "travel"], []]}, schema=pa.schema([
                      ("user_id", pa.string()), ("txn_count", pa.int64()), ("last_at", pa.timestamp("us")),
                      ("known", pa.list_(pa.string()))]))
TABLES = {"stats": STATS, "vocab": VOCAB, "state": STATE}


def _records(n: int = 400, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    cats = ["grocery", " Grocery ", "TRAVEL", "travel ", "", "   ", None, "spaceships", "grocery x", "ünï", "Travel",
            "GROCERY", "  grocery  ", "\tgrocery", " "]
    users = ["u1", "u2", "u3", None, "U1", " u1"]
    stamps = [dt.datetime(2026, 3, 29, 0, 0), dt.datetime(2026, 3, 29, 1, 30, 0, 500), dt.datetime(1969, 12, 31, 23, 59, 59),
              dt.datetime(2024, 2, 29, 12), dt.datetime(2100, 12, 31, 23, 59, 59), None]
    amounts = [0.0, -3.5, 2.5, -2.5, 1e-9, 1e12, 12.345, None]
    return [{"id": f"r{i}", "at": stamps[i % len(stamps)], "amount": amounts[int(rng.integers(len(amounts)))],
             "n": [None, 0, -7, 12][int(rng.integers(4))], "category": cats[int(rng.integers(len(cats)))],
             "user": users[int(rng.integers(len(users)))]} for i in range(n)]


def _identity_model(n_features: int) -> bytes:
    """A stand-in "model": outputs its input, so the fused graph's features are what we compare."""
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, n_features])
    graph = helper.make_graph([helper.make_node("Identity", ["features"], ["out"])], "m", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _compare(features: dict[str, str], joins: str = "", records: list[dict] | None = None) -> None:
    """Compile `select <features> from request [joins]` and compare with DuckDB on the same rows."""
    select = ",\n".join(f"{expr} as {name}" for name, expr in features.items())
    sql = f"with t as (select * from request) select t.__row_id, {select} from t as t {joins} order by t.__row_id"
    names = tuple(features)
    fused = compile_fused(sql, SCHEMA, TABLES, names, _identity_model(len(names)))
    request = records_to_table(records or _records(), SCHEMA)
    con = duckdb.connect()
    for name, table in TABLES.items():
        con.register(name, table)
    con.register("request", request)
    expected = con.execute(sql).fetch_arrow_table()
    session = ort.InferenceSession(fused.onnx, providers=["CPUExecutionProvider"])
    feeds = encode_inputs(request, fused.inputs)
    batch = session.run(["features"], feeds)[0]
    # Row by row too: a lone clean row takes the exact-lookup branch, a batch with any dirty row the
    # regex fallback, and both must agree with DuckDB.
    rows = np.concatenate([session.run(["features"], {k: v[i:i + 1] for k, v in feeds.items()})[0]
                           for i in range(request.num_rows)])
    for got in (batch, rows):
        for j, name in enumerate(names):
            want = expected.column(name).to_numpy(zero_copy_only=False).astype(np.float64).astype(np.float32)
            np.testing.assert_allclose(got[:, j], want, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name)


def test_arithmetic_functions_and_null_semantics() -> None:
    _compare({
        "plus": "t.amount + t.n", "ratio": "t.amount / nullif(t.n, 0)", "neg": "-t.amount",
        "logged": "ln(1 + greatest(t.amount, 0))", "root": "sqrt(abs(t.amount))", "power": "power(abs(t.amount), 0.5)",
        "ex": "exp(least(t.amount, 5))", "floored": "floor(t.amount)", "ceiled": "ceil(t.amount)",
        "rounded": "round(t.amount)", "rounded2": "round(t.amount, 2)", "filled": "coalesce(t.amount, t.n, -1)",
        "greatest_ignores_null": "greatest(t.amount, t.n)", "least_ignores_null": "least(t.amount, t.n)",
        "as_int": "cast(t.amount as bigint)", "as_double": "cast(t.n as double)", "log10": "log(1 + abs(t.amount))",
        "floor_int": "cast(floor(t.amount) as bigint)", "sum_int": "cast(floor(t.amount) + t.n as bigint)",
        "half_int": "cast(floor(t.amount) * 0.5 as bigint)", "round_int": "cast(round(t.amount, 1) as bigint)",
    })


def test_comparisons_boolean_logic_case_and_in() -> None:
    _compare({
        "cmp": "cast(t.amount >= 2.5 as integer)", "ne": "cast(t.amount <> 0 as integer)",
        "both": "cast(t.amount > 0 and t.n > 0 as integer)", "either": "cast(t.amount > 0 or t.n > 0 as integer)",
        "negated": "cast(not (t.amount > 0) as integer)", "missing": "cast(t.amount is null as integer)",
        "present": "cast(t.n is not null as integer)",
        "bucket": "case when t.amount is null then -1 when t.amount < 0 then 0 when t.amount < 10 then 1 else 2 end",
        "simple_case": "case t.n when 0 then 10 when -7 then 20 else 30 end",
        "listed": "cast(t.n in (0, 12) as integer)",
    })


def test_strings_cleaned_and_compared_against_constants() -> None:
    _compare({
        "is_grocery": "cast(nullif(lower(trim(t.category)), '') = 'grocery' as integer)",
        "is_travel_upper": "cast(upper(trim(t.category)) = 'TRAVEL' as integer)",
        "exact": "cast(t.category = 'grocery' as integer)",
        "in_list": "cast(lower(trim(t.category)) in ('grocery', 'travel') as integer)",
        "empty_is_null": "cast(nullif(lower(trim(t.category)), '') is null as integer)",
        "never": "cast(lower(t.category) = 'Grocery' as integer)",
        "never_padded": "cast(trim(t.category) = ' grocery' as integer)",  # trim(x) has no edge spaces
        "not_padded": "cast(trim(t.category) <> 'travel ' as integer)",
        "raw_empty": "cast(t.category = '' as integer)", "trimmed_empty": "cast(trim(t.category) = '' as integer)",
    })


def test_timestamp_parts_including_pre_1970_leap_days_and_dst() -> None:
    _compare({"hour": "hour(t.at)", "dow": "isodow(t.at)", "day": "day(t.at)", "month": "month(t.at)",
              "hour_int": "cast(hour(t.at) as integer)", "dow_int": "cast(isodow(t.at) + 1 as integer)",
              "since": "cast(epoch(t.at) / 7 as bigint)",
              "epoch": "epoch(t.at)", "night": "cast(hour(t.at) < 6 as integer)"})


def test_frozen_tables_constants_lookups_and_list_contains() -> None:
    _compare(
        {
            "centred": "t.amount - s.mean", "clipped": "least(t.amount, s.clip)",
            "category_index": "case when nullif(lower(trim(t.category)), '') is null then -1 "
                              "else coalesce(v.category_index, 0) end",
            "count": "coalesce(st.txn_count, 0)",
            # folded row by row over the looked-up snapshot row, then mixed with request values
            "per_txn": "10.0 / nullif(st.txn_count, 0)", "over_three": "t.amount / nullif(st.txn_count, 3)",
            "known_count": "case when st.txn_count is null then -1 when st.txn_count > 2 then 1 else 0 end",
            "since": "epoch(t.at) - epoch(st.last_at)",
            "is_new": "case when nullif(lower(trim(t.category)), '') is null then -1 "
                      "when list_contains(coalesce(st.known, []), nullif(lower(trim(t.category)), '')) then 0 else 1 end",
        },
        joins="cross join stats as s "
              "left join vocab as v on v.feature_name = 'category' and v.category = nullif(lower(trim(t.category)), '') "
              "left join state as st on st.user_id = t.user",
    )


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("avg(t.amount) over ()", "Window"),
        ("t.category || 'x'", "DPipe"),
        ("length(t.category)", "Length"),
        # Non-ASCII constants after lower() compile now (DuckDB's own case tables); a DOUBLE's text does not.
        ("cast(cast(t.amount as varchar) = '1.5' as integer)", "VARCHAR"),
        ("random()", "Rand"),
    ],
)
def test_outside_the_subset_is_a_compile_error_naming_the_expression(expression: str, named: str) -> None:
    sql = f"with t as (select * from request) select t.__row_id, {expression} as f from t as t"
    with pytest.raises(FusedCompileError, match=named):
        compile_fused(sql, SCHEMA, TABLES, ("f",), _identity_model(1))


def test_the_fused_graph_is_a_valid_standalone_onnx_model() -> None:
    sql = "with t as (select * from request) select t.__row_id, hour(t.at) as h from t as t"
    fused = compile_fused(sql, SCHEMA, TABLES, ("h",), _identity_model(1))
    model = onnx.load_from_string(fused.onnx)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["at"]  # only the fields the features use
    assert [o.name for o in model.graph.output] == ["features", "unsure", "model_out"]


def test_a_sum_of_indicator_comparisons_is_one_vector_comparison_and_agrees() -> None:
    bucket = " + ".join(f"cast(t.amount >= {c} as integer)" for c in (-3, 0, 2.5, 1e9))
    _compare({"bucket": f"({bucket})", "bucket_n": " + ".join(f"cast(t.n < {c} as integer)" for c in (0, 12, 13)),
              "mixed": "cast(t.amount >= 0 as integer) + cast(t.n >= 0 as integer) + cast(t.amount >= 2 as integer)"},
             joins="cross join stats as s")
    sql = f"with t as (select * from request) select t.__row_id, ({bucket}) as f from t as t"
    ops = [n.op_type for n in onnx.load_from_string(compile_fused(sql, SCHEMA, TABLES, ("f",), _identity_model(1)).onnx).graph.node]
    assert ops.count("GreaterOrEqual") == 1 and "ReduceSum" in ops, ops


def test_small_requests_are_encoded_exactly_as_large_ones() -> None:
    from serving import fused as fused_module

    request = records_to_table(_records(60), SCHEMA)
    large = encode_inputs(request, SCHEMA)  # 60 rows: Arrow kernels
    for i in range(request.num_rows):
        row = encode_inputs(request.slice(i, 1), SCHEMA)  # one row: Python values
        for name, column in large.items():
            got, want = row[name], column[i:i + 1]
            assert got.dtype == want.dtype, name
            if got.dtype == object:
                assert got.tolist() == want.tolist(), name
            else:
                np.testing.assert_array_equal(got, want, err_msg=name)
    assert fused_module.SMALL_REQUEST_ROWS < 60


def test_the_constructs_outside_probes_found_missing_or_wrong_now_match_duckdb() -> None:
    """Issue 17: CASE returning NULL (a bool Where ONNX Runtime cannot run), division by NULLIF,
    BETWEEN, IN of numbers, casts between numbers and text, LOG/LOG10, EXTRACT and DATE_PART."""
    _compare({
        "case_null": "case when t.n = 0 then null else t.amount / t.n end",
        "null_branch_bool": "cast(case when t.n = 0 then null else t.amount > 0 end as integer)",
        "by_nullif": "t.amount / nullif(t.n, 0)",
        "between": "cast(t.amount between -1 and 3 as integer)",
        "not_between": "cast(t.n not between 0 and 12 as integer)",
        "in_numbers": "cast(t.n in (0, -7, 12.0) as integer)",
        "as_text": "cast(cast(t.n as varchar) = '-7' as integer)",
        "as_text_zero_padded": "cast(cast(t.n as varchar) = '07' as integer)",
        "log": "log(1 + abs(t.amount))", "log10": "log10(1 + abs(t.amount))",
        "extract": "extract(hour from t.at)", "date_part": "date_part('doy', t.at)",
        "dow": "dayofweek(t.at)", "year": "year(t.at)", "minute": "minute(t.at)",
    })


def test_unicode_spaces_and_case_mapping_are_duckdbs() -> None:
    """trim strips U+3000 and U+00A0 (not tabs); lower('İOS') is 'ios'; upper('ıt') is 'IT'; 'ioſ' stays."""
    odd = ["\u3000terminal", "terminal\u00a0", "\tterminal", "İOS", "ios", "ıt", "IT", "ioſ", "IOS", "straße", "STRAẞE"]
    records = [{**r, "category": odd[i % len(odd)]} for i, r in enumerate(_records(len(odd) * 3))]
    _compare({
        "terminal": "cast(trim(t.category) = 'terminal' as integer)",
        "ios": "cast(lower(trim(t.category)) = 'ios' as integer)",
        "it": "cast(upper(t.category) = 'IT' as integer)",
        "strasse": "cast(upper(t.category) = 'STRAẞE' as integer)",
    }, records=records)


def test_lookups_by_integer_keys_and_by_an_integer_cast_to_text() -> None:
    global TABLES
    saved = TABLES
    TABLES = {**saved, "by_int": pa.table({"k": pa.array([0, -7, 12], pa.int64()), "v": [1.5, 2.5, 3.5]}),
              "by_text": pa.table({"k": ["0", "-7", "012", "x"], "v": [10.0, 20.0, 30.0, 40.0]})}
    try:
        _compare({"int_key": "coalesce(bi.v, -1)", "text_key": "coalesce(bt.v, -1)"},
                 joins="left join by_int as bi on bi.k = t.n left join by_text as bt on bt.k = cast(t.n as varchar)")
    finally:
        TABLES = saved


@pytest.mark.parametrize(("key", "compiles"), [("courier", True), ("cast(courier as bigint)", True),
                                               ("cast(courier as varchar)", True), ("cast(courier as hugeint)", True),
                                               ("cast(courier as integer)", False), ("courier % 10", False)])
def test_an_integer_entity_key_groups_as_it_is_or_cast_to_bigint_or_text(key: str, compiles: bool) -> None:
    """The state window's partition must be the store's grouping (one group per raw key): a cast
    that keeps every key distinct and never fails keeps it; a narrowing or lossy one does not."""
    from serving.store.spec import EntitySpec

    schema = (InputField("id", "string", False), InputField("at", "timestamp", False),
              InputField("courier", "integer", False))
    entity = EntitySpec("courier", "entity_events__courier", "courier", "id", "at", (), 1.0)
    sql = f"""
        with ev as (select __row_id, {key} as courier_key, at from entity_events__courier),
        st as (select __row_id as state_key, count(at) over w as c from ev
               window w as (partition by courier_key order by at range between interval 1 days preceding
                            and current row exclude group))
        select r.__row_id, coalesce(st.c, 0) as f from request as r left join st on st.state_key = r.__row_id
        order by r.__row_id"""
    if compiles:
        compile_fused(sql, schema, {}, ("f",), _identity_model(1), {entity.relation: entity})
    else:
        with pytest.raises(FusedCompileError, match="partitioned by the entity key first"):
            compile_fused(sql, schema, {}, ("f",), _identity_model(1), {entity.relation: entity})
