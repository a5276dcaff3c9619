"""The server reads request bodies with orjson where it gives exactly what ``json.loads`` gives."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.body import parse_json


def _same(raw: bytes) -> None:
    try:
        expected = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            parse_json(raw)
        return
    got = parse_json(raw)
    assert repr(got) == repr(expected)  # repr: NaN equal to NaN, 1 distinct from 1.0 and True


@pytest.mark.parametrize("raw", [
    b'{"records": [{"a": 18446744073709551616}]}',  # past 64 bits: an int, never a float
    b'{"a": -9223372036854775809}', b'{"a": 18446744073709551615}', b'{"a": 1234567890123456789012.5}',
    b'{"a": NaN, "b": Infinity, "c": -Infinity}', b'{"a": 1e400}',
    b'"\\ud800"', b'\xef\xbb\xbf{"a": 1}', '{"a": "é"}'.encode("utf-16"), b'"\xed\xa0\x80"',
    b'{"a": 1, "a": 2}', b'-0', b'-0.0', b'1E2', b'[1,]', b'{"a":1}x', b'"a\nb"', b'\xff', b'',
    b'[' * 2000 + b']' * 2000, b'[' * 600 + b']' * 600, b'{"a": 0.1, "b": 5e-324, "c": 1.7976931348623157e308}',
])
def test_tricky_bodies_parse_as_the_standard_library_parses_them(raw: bytes) -> None:
    _same(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(json_values, st.booleans())
def test_any_body_parses_as_the_standard_library_parses_it(value: object, ascii_only: bool) -> None:
    _same(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


def test_a_long_digit_run_in_a_string_is_still_read_correctly() -> None:
    body = json.dumps({"id": "1" * 40, "n": 2**70, "x": math.pi}).encode()
    assert parse_json(body) == {"id": "1" * 40, "n": 2**70, "x": math.pi}
