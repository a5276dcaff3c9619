import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.bundle import InputField
from serving.errors import InputValidationError
from serving.schema import ROW_ID, arrow_to_request_table, records_to_table

FIELDS = (
    InputField("id", "string", nullable=False),
    InputField("amount", "double", nullable=False),
    InputField("count", "integer", nullable=True),
    InputField("flag", "boolean", nullable=True),
    InputField("at", "timestamp", nullable=False),
)
GOOD = {"id": "a", "amount": 3, "count": 2, "flag": True, "at": "2026-03-29T01:30:00Z"}


def problems(records) -> list[tuple[int, str]]:
    with pytest.raises(InputValidationError) as info:
        records_to_table(records, FIELDS)
    return [(p.record, p.field) for p in info.value.problems]


def test_valid_records_become_a_typed_table() -> None:
    table = records_to_table([GOOD, {**GOOD, "count": None, "flag": None, "at": "2026-03-29T03:30:00+02:00"}], FIELDS)
    assert table.schema.field("amount").type == pa.float64()
    assert table.column("amount").to_pylist() == [3.0, 3.0]
    # Offsets are converted to naive UTC, as the landing files hold timestamps.
    assert table.column("at").to_pylist() == [dt.datetime(2026, 3, 29, 1, 30)] * 2
    assert table.column(ROW_ID).to_pylist() == [0, 1]


def test_missing_and_unexpected_fields_name_record_and_field() -> None:
    bad = {k: v for k, v in GOOD.items() if k != "amount"} | {"amout": 3}
    assert problems([GOOD, bad]) == [(1, "amount"), (1, "amout")]


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", "12.5"), ("amount", True), ("amount", float("nan")), ("count", 1.5), ("flag", 1),
     ("id", 7), ("at", "yesterday"), ("at", 1767225600), ("amount", None), ("id", None)],
)
def test_wrong_types_and_nulls_are_rejected(field: str, value: object) -> None:
    assert problems([{**GOOD, field: value}]) == [(0, field)]


def test_every_problem_is_reported_and_message_is_readable() -> None:
    with pytest.raises(InputValidationError) as info:
        records_to_table([{**GOOD, "amount": "x"}, {**GOOD, "id": None}], FIELDS)
    message = str(info.value)
    assert "record 0, field 'amount': expected double, got str 'x'" in message
    assert "record 1, field 'id'" in message


def test_empty_batch_and_non_object_records() -> None:
    assert problems([]) == [(0, "records")]
    assert problems([GOOD, "nope"]) == [(1, "<record>")]


def test_arrow_input_is_checked_and_cast() -> None:
    table = pa.table({"id": ["a"], "amount": pa.array([2], pa.int32()), "count": [None], "flag": [None],
                      "at": pa.array([dt.datetime(2026, 1, 1)], pa.timestamp("ms"))})
    out = arrow_to_request_table(table, FIELDS)
    assert out.column("amount").type == pa.float64()
    with pytest.raises(InputValidationError, match="field 'amount': column type is string"):
        arrow_to_request_table(table.set_column(1, "amount", pa.array(["2"])), FIELDS)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "\ud800"), ("amount", 10**400), ("amount", -(10**309)), ("count", 2**63), ("count", True),
     ("at", "0001-01-01T00:00:00+05:00"), ("at", "9999-12-31T23:59:59-05:00"), ("amount", float("inf")),
     ("id", ["a"]), ("amount", {"v": 1}), ("at", 12.5)],
)
def test_values_that_would_crash_a_naive_converter_are_named(field: str, value: object) -> None:
    assert problems([{**GOOD, field: value}]) == [(0, field)]


def test_columns_mixing_good_and_bad_values_name_each_bad_record() -> None:
    records = [GOOD, {**GOOD, "amount": "1"}, GOOD, {**GOOD, "amount": 10**400, "id": "\udfff"}]
    assert problems(records) == [(1, "amount"), (3, "id"), (3, "amount")]


def test_a_valid_batch_takes_the_fast_path_and_keeps_values() -> None:
    rows = [{**GOOD, "amount": i, "count": None if i % 2 else i} for i in range(1000)]
    table = records_to_table(rows, FIELDS)
    assert table.column("amount").to_pylist() == [float(i) for i in range(1000)]
    assert table.column("count").null_count == 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
field_values = {
    "id": st.text() | json_values, "amount": st.floats() | st.integers() | json_values,
    "count": st.integers() | json_values, "flag": st.booleans() | json_values,
    "at": st.datetimes(timezones=st.timezones()).map(dt.datetime.isoformat) | st.text() | json_values,
}
records = st.fixed_dictionaries({}, optional=field_values) | st.dictionaries(st.text(max_size=4), json_values, max_size=3)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records | json_values, max_size=4))
def test_any_json_becomes_a_table_or_a_validation_error(batch: list) -> None:
    try:
        table = records_to_table(batch, FIELDS)
    except InputValidationError as exc:
        assert exc.problems and all(0 <= p.record < max(len(batch), 1) for p in exc.problems)
        str(exc).encode("ascii")  # messages are safe to put in any response
        return
    assert table.num_rows == len(batch) and table.schema.names[:-1] == [f.name for f in FIELDS]


def test_nul_characters_are_refused_they_mark_null_in_the_fused_model() -> None:
    assert problems([{**GOOD, "id": "a\0b"}]) == [(0, "id")]


def test_small_and_large_batches_build_the_same_table() -> None:
    # A few records are checked value by value and converted in one Arrow call; many records
    # take the vectorised column path. Both must give the same table, nulls and all.
    from serving.schema import _SMALL_BATCH

    fields = (InputField("s", "string", True), InputField("d", "double", True), InputField("i", "integer", True),
              InputField("b", "boolean", False), InputField("t", "timestamp", True))
    rows = [{"s": s, "d": d, "i": i, "b": b, "t": t}
            for s, d, i, b, t in zip(["a", None, "", "é"] * 10, [1, 2.5, None, -0.0] * 10, [None, 3, -(2**63), 2**63 - 1] * 10,
                                     [True, False] * 20, ["2026-03-29T01:30:00.000500+02:00", None, "1969-12-31T23:59:59", "2100-01-01"] * 10)]
    large = records_to_table(rows, fields)
    assert len(rows) > _SMALL_BATCH
    for start in range(0, len(rows), 3):
        small = records_to_table(rows[start:start + 3], fields)
        assert small.schema == large.schema
        assert small.drop_columns(["__row_id"]).equals(large.slice(start, 3).drop_columns(["__row_id"]).combine_chunks())
        assert small.column("__row_id").to_pylist() == list(range(small.num_rows))


def _outcome(rows: list[dict]) -> object:
    try:
        return records_to_table(rows, FIELDS).column("at").to_pylist()
    except InputValidationError as exc:
        return [(p.record, p.field, p.problem) for p in exc.problems]


two_digits = st.integers(0, 99).map("{:02d}".format)
iso_like = st.builds(
    "{}-{}-{}T{}:{}:{}{}{}".format,
    st.integers(0, 9999).map("{:04d}".format) | st.sampled_from(["0001", "9999", "2024", "2026"]),
    two_digits, two_digits, two_digits, two_digits, two_digits,
    st.sampled_from(["", "."]) .flatmap(lambda dot: st.just("") if not dot else
                                        st.integers(1, 8).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)).map(dot.__add__)),
    st.sampled_from(["", "Z", "z"]) | st.builds("{}{}:{}".format, st.sampled_from("+-"), two_digits, two_digits),
)


@settings(max_examples=1500, deadline=None)
@given(iso_like)
def test_vectorised_timestamps_agree_with_value_by_value_checks(text: str) -> None:
    # 20 records take Arrow's column path; one record is checked by fromisoformat alone.
    from serving.schema import _SMALL_BATCH

    many = [{**GOOD, "at": text}] * (_SMALL_BATCH + 4)
    one = _outcome([{**GOOD, "at": text}])
    got = _outcome(many)
    if isinstance(one, list) and one and isinstance(one[0], tuple):
        assert got == [(i, *one[0][1:]) for i in range(len(many))]
    else:
        assert got == one * len(many)


def test_vectorised_timestamps_mixing_zones_and_edge_values() -> None:
    texts = ["2026-03-29T01:30:00Z", "2026-03-29T03:30:00+02:00", "2026-03-29T01:30:00", "2024-02-29T23:59:59.5",
             "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999", "2026-03-29T01:30:00.000001-00:30"] * 3
    expected = [_outcome([{**GOOD, "at": t}])[0] for t in texts]
    assert _outcome([{**GOOD, "at": t} for t in texts]) == expected
    for bad in ["2026-02-29T00:00:00", "2026-01-01T24:00:00", "2026-01-01T23:59:60", "0000-01-01T00:00:00",
                "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T10:00:00+24:00"]:
        rows = [{**GOOD, "at": t} for t in texts] + [{**GOOD, "at": bad}]
        assert [(p[0], p[1]) for p in _outcome(rows)] == [(len(texts), "at")], bad


def test_timestamps_past_year_9999_once_in_utc_are_named() -> None:
    rows = [{**GOOD, "at": "9999-12-31T23:59:59-00:01"}] * 20  # Arrow holds year 10000; Python cannot
    one = _outcome(rows[:1])
    assert one[0][:2] == (0, "at") and "out of range" in one[0][2]
    assert _outcome(rows) == [(i, "at", one[0][2]) for i in range(20)]


# --- the server's batch body decoder: only ever the general path's answer, faster ------------------

def _general_path(raw: bytes, max_records: int) -> tuple[pa.Table, list] | None:
    """What the server does without the decoder: parse, unwrap the batch, validate."""
    from serving.body import parse_json

    try:
        body = parse_json(raw)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(body, dict) and list(body) == ["records"] and isinstance(body["records"], list)):
        return None
    if len(body["records"]) > max_records:
        return None
    try:
        return records_to_table(body["records"], FIELDS), body["records"]
    except InputValidationError:
        return None


def _typed(value: object) -> object:
    """A JSON value with each number's type kept (1 and 1.0 differ); object keys in any order."""
    if isinstance(value, dict):
        return sorted((k, _typed(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


def _agrees_with_the_general_path(raw: bytes, max_records: int = 10_000) -> bool:
    """The decoder's table and logged records, when it decodes, are the general path's; returns
    whether it decoded."""
    import json

    from serving.schema import BatchBodyDecoder

    fast = BatchBodyDecoder(FIELDS).decode(raw, max_records)
    if fast is None:
        return False
    general = _general_path(raw, max_records)
    assert general is not None, raw
    table, records = general
    assert fast[0].table.combine_chunks().equals(table.combine_chunks()), raw
    assert _typed(json.loads(fast[1])) == _typed(records), raw
    return True


def _body(rows: list, *, indent: int | None = None, ensure_ascii: bool = True) -> bytes:
    import json

    return json.dumps({"records": rows}, indent=indent, ensure_ascii=ensure_ascii).encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records | json_values, max_size=4), st.sampled_from([None, 2]), st.booleans())
def test_the_body_decoder_gives_the_general_paths_table_or_nothing(batch: list, indent: int | None, ascii_only: bool) -> None:
    try:
        raw = _body(batch, indent=indent, ensure_ascii=ascii_only)
    except ValueError:  # out-of-range floats that json.dumps refuses
        return
    _agrees_with_the_general_path(raw)


def test_the_body_decoder_takes_plain_batches_and_leaves_the_rest_to_the_general_path() -> None:
    rows = [{**GOOD, "amount": i + 0.5 if i % 3 else i, "count": None if i % 2 else i, "at": f"2026-03-29T01:{i % 60:02d}:00"}
            for i in range(50)]
    assert _agrees_with_the_general_path(_body(rows))
    assert _agrees_with_the_general_path(_body(rows, indent=2))  # newlines between tokens
    assert _agrees_with_the_general_path(_body([{**GOOD, "id": "é😀\u2028"}], ensure_ascii=False))
    good = _body([GOOD]).decode()
    declined = [
        _body([]), _body(rows, indent=None)[:-1], good.replace('"records"', '"records": [], "x"'),
        good.replace('"amount": 3', '"amount": true'), good.replace('"amount": 3', '"amount": NaN'),
        good.replace('"amount": 3', '"amount": 1e999'),
        good.replace('"id": "a"', '"id": "a\\u0000b"'), good.replace('"id": "a"', '"id": "\\ud800"'),
        good.replace('"id": "a"', '"id": null'), good.replace('"id": "a", ', ''), good.replace('"id": "a"', '"id": "a", "x": 1'),
        good.replace('"count": 2', '"count": 2.0'), good.replace('"count": 2', '"count": 9223372036854775808'),
        "\ufeff" + good, '{"records": [1]}',
    ]
    for raw in declined:
        assert not _agrees_with_the_general_path(raw.encode() if isinstance(raw, str) else raw), raw
    # Valid, but not in the forms Arrow's vectorised checks take: a few records are checked value
    # by value (the general path's own checks), a larger batch is left to the general path.
    for odd in ({**GOOD, "amount": 123456789012345678901234}, {**GOOD, "at": "2026-03-29"}):
        assert _agrees_with_the_general_path(_body([odd]))
        assert not _agrees_with_the_general_path(_body([odd] * 20))
    assert not _agrees_with_the_general_path(_body(rows), max_records=49)  # over the limit: the 413 is the general path's
    # A repeated key counts once, its last value, as every JSON parser here reads it.
    assert _agrees_with_the_general_path(good.replace('"id": "a"', '"id": "z", "id": "a"').encode())


valid_records = st.fixed_dictionaries({
    "id": st.text(), "amount": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
    "count": st.none() | st.integers(-(2**63), 2**63 - 1), "flag": st.none() | st.booleans(),
    "at": st.datetimes(timezones=st.none() | st.timezones()).map(dt.datetime.isoformat),
})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_records, min_size=1, max_size=30), st.booleans())
def test_the_body_decoder_reads_any_plainly_valid_batch(rows: list, ascii_only: bool) -> None:
    raw = _body(rows, ensure_ascii=ascii_only)
    decoded = _agrees_with_the_general_path(raw)
    stamps = [dt.datetime.fromisoformat(r["at"]) for r in rows]
    # Left to the general path by design: NUL, a column mixing zoned and naive timestamps, zone
    # offsets with seconds, and the edge years (past 9999 or before 1 once in UTC, which it names).
    plain = (_general_path(raw, 10_000) is not None and not any("\0" in r["id"] for r in rows)
             and len({s.tzinfo is None for s in stamps}) == 1 and not any(s.year in (1, 9999) for s in stamps)
             and all(s.utcoffset() is None or s.utcoffset() % dt.timedelta(minutes=1) == dt.timedelta(0) for s in stamps))
    assert decoded or not plain, raw


def test_a_value_nested_past_the_recursion_limit_is_named_not_a_recursion_error() -> None:
    deep: object = 1
    for _ in range(100_000):  # what a Python caller can pass (HTTP refuses past 32 levels as a 400)
        deep = [deep]
    with pytest.raises(InputValidationError) as info:
        records_to_table([{**GOOD, "amount": deep}], FIELDS)
    (problem,) = info.value.problems
    assert problem.field == "amount" and "a list nested too deeply to show" in problem.problem


def test_nesting_depth_is_measured_without_recursion() -> None:
    from serving.body import MAX_NESTING, nests_too_deep

    def nested(depth: int) -> object:
        value: object = 1
        for i in range(depth):
            value = [value] if i % 2 else {"k": value}
        return value

    assert not nests_too_deep(nested(MAX_NESTING)) and nests_too_deep(nested(MAX_NESTING + 1))
    assert nests_too_deep(nested(1_000_000)) and not nests_too_deep({"records": [{"a": 1, "b": "x"}] * 1000})


@pytest.mark.parametrize("name", ["Sepal.Length", "petal width", "Class", "1st", "for", "naïve-col"])
def test_the_batch_decoder_takes_any_column_name(name: str) -> None:
    """A landing column need not be a Python identifier: the decoder's struct attributes are
    positional and renamed to the field's JSON name (was ``TypeError: __slots__ must be identifiers``)."""
    from serving.schema import BatchBodyDecoder

    fields = (InputField(name, "double", nullable=False), InputField("id", "string", nullable=True))
    decoded = BatchBodyDecoder(fields).decode(f'{{"records": [{{"{name}": 1.5, "id": "a"}}]}}'.encode(), 10)
    assert decoded is not None
    request, records = decoded
    assert records == f'[{{"{name}":1.5,"id":"a"}}]'.encode()
    assert BatchBodyDecoder(fields).decode(b'{"records": [{"id": "a"}]}', 10) is None  # missing: the general path names it
