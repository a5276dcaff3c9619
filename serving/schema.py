"""Turn request records into an Arrow table that matches the bundle's raw input schema.

Validation is strict and complete: every problem in every record is reported (record index,
field, expected and actual), and nothing is coerced silently. Integers are accepted for double
fields (JSON does not distinguish 5 from 5.0); booleans are never numbers; timestamps are
strings of one grammar (``serving.timestamps``: RFC 3339) or ``datetime`` values, converted to
naive UTC as the landing files hold them.

Any value at all (whatever ``json.loads`` can produce, or a Python caller passes) ends in either a
typed table or an ``InputValidationError``; nothing else escapes. Columns whose values all have
the expected Python type take a vectorised fast path; any other column is checked value by value,
so the fast path never decides what is valid, only how quickly a valid column is built.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.bundle import InputField
from serving.errors import FieldProblem, InputValidationError
from serving.request import ROW_ID, Request
from serving.timestamps import parse_timestamp

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "double": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}
EMPTY_BATCH = "the batch is empty; send at least one record"
_MISSING = object()
_SMALL_BATCH = 16
_FAST_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "double": frozenset({float, int}),
    "integer": frozenset({int}),
    "boolean": frozenset({bool}),
    "timestamp": frozenset({str}),
}
_MIN_MICROS = (dt.datetime.min - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
_MAX_MICROS = (dt.datetime.max - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
# Timestamps that Arrow parses in one call, only after every value matches this: the commonest forms
# of the grammar (serving.timestamps; "T", seconds, up to 6 fraction digits, optional "Z" or
# +HH:MM). Arrow refuses what the grammar refuses among them (checked value for value in tests);
# any refusal or anything else goes value by value, which decides and names the problem.
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?$"


def arrow_schema(fields: Sequence[InputField]) -> pa.Schema:
    return _arrow_schema(tuple(fields))


@functools.lru_cache(maxsize=8)
def _arrow_schema(fields: tuple[InputField, ...]) -> pa.Schema:
    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type], nullable=f.nullable) for f in fields])


@functools.lru_cache(maxsize=8)
def _request_schema(fields: tuple[InputField, ...]) -> pa.Schema:
    """The request table's fields (nullability is checked value by value, not declared)."""
    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type]) for f in fields])


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _shown(value: Any) -> str:
    """A short, ASCII-safe rendering of a rejected value for error messages."""
    try:
        text = ascii(value)
    except RecursionError:  # a value nested past the recursion limit (a Python caller's; HTTP refuses it sooner)
        return f"a {_type_name(value)} nested too deeply to show"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_timestamp(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str):  # the one grammar, which the monitoring staging shares (serving.timestamps)
        try:
            return parse_timestamp(value), None
        except ValueError as exc:
            return None, f"{exc}, got {_shown(value)}"
    if not isinstance(value, dt.datetime):
        return None, f"expected timestamp, got {_type_name(value)} {_shown(value)}"
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        except (OverflowError, ValueError):
            return None, f"timestamp {_shown(value.isoformat())} is out of range once converted to UTC"
    return value, None


def _check_value(value: Any, field: InputField) -> tuple[Any, str | None]:
    """Return (converted value, problem or None)."""
    if value is None:
        return None, None if field.nullable else "is required (not nullable), got null"
    kind = field.type
    if kind == "timestamp":
        return _check_timestamp(value)
    if kind == "string" and isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None, f"expected valid Unicode text, got a string with a lone surrogate: {_shown(value)}"
        if "\0" in value:  # the fused model's NULL marker; never part of real text
            return None, f"expected text without NUL characters, got {_shown(value)}"
        return value, None
    if kind == "double" and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number, None
        return None, f"expected a finite number, got {_shown(value)}"
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        if -(2**63) <= value < 2**63:
            return value, None
        return None, f"expected a 64-bit integer, got {_shown(value)}"
    if kind == "boolean" and isinstance(value, bool):
        return value, None
    return None, f"expected {kind}, got {_type_name(value)} {_shown(value)}"


def _fast_column(values: list[Any], field: InputField) -> pa.Array | None:
    """The column as an Arrow array when every value plainly has the right type, else None."""
    allowed = _FAST_TYPES.get(field.type)
    if allowed is None:
        return None
    types = set(map(type, values))
    if field.nullable:
        types.discard(type(None))
    if not types <= allowed:
        return None
    return _typed_column(values, field)


def _typed_column(values: list[Any], field: InputField) -> pa.Array | None:
    """``_fast_column`` for values already of the field's plain types (or None where nullable)."""
    try:
        if field.type == "timestamp":
            return _fast_timestamps(pa.array(values, type=pa.string()))
        array = pa.array(values, type=ARROW_TYPES[field.type])
    except (pa.ArrowException, OverflowError, UnicodeEncodeError, TypeError, ValueError):
        return None  # the value-by-value check names the culprit
    if field.type == "double" and pc.any(pc.invert(pc.is_finite(array))).as_py():
        return None
    if field.type == "string" and _holds_nul(array):
        return None  # NUL is refused value by value, with its record and field
    return array


def _holds_nul(array: pa.StringArray) -> bool:
    """Whether any value holds a NUL character: one search of the array's character data."""
    _, offsets, data = array.buffers()
    if data is None or not len(array):
        return False
    start, end = np.frombuffer(offsets, dtype=np.int32)[[array.offset, array.offset + len(array)]].tolist()
    return data.to_pybytes().find(b"\0", start, end) >= 0


def _fast_timestamps(array: pa.StringArray) -> pa.Array | None:
    """ISO-8601 strings as naive UTC timestamps, vectorised; None when any value needs a closer look."""
    if not pc.all(pc.match_substring_regex(array, _ISO_TIMESTAMP)).as_py():
        return None
    try:
        parsed = array.cast(ARROW_TYPES["timestamp"])  # no zone on any value
    except pa.ArrowException:
        try:  # a zone on every value: to UTC, then naive, as _check_timestamp converts
            parsed = array.cast(pa.timestamp("us", tz="UTC")).cast(ARROW_TYPES["timestamp"])
        except pa.ArrowException:
            return None
    bounds = pc.min_max(parsed.cast(pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and not (_MIN_MICROS <= low and high <= _MAX_MICROS):
        return None  # past year 1 or 9999 once in UTC: Python's datetime cannot hold it; named value by value
    return parsed


def _slow_column(values: list[Any], field: InputField, problems: list[FieldProblem]) -> pa.Array | None:
    converted = []
    for i, value in enumerate(values):
        if value is _MISSING:
            continue  # already reported as missing
        checked, problem = _check_value(value, field)
        if problem:
            problems.append(FieldProblem(i, field.name, problem))
        converted.append(checked)
    if len(converted) != len(values) or problems:
        return None
    return pa.array(converted, type=ARROW_TYPES[field.type])


def _shape_problems(records: list[Any], expected: frozenset[str]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    for i, record in enumerate(records):
        if type(record) is not dict and not isinstance(record, Mapping):
            problems.append(FieldProblem(i, "<record>", f"expected an object of fields, got {_type_name(record)}"))
            continue
        keys = record.keys()
        if keys == expected:
            continue
        for name in sorted(expected - keys):
            problems.append(FieldProblem(i, name, "is missing"))
        for name in sorted(keys - expected, key=str):
            problems.append(FieldProblem(i, _shown(name).strip("'\""),
                                         f"is not an input of this model; expected fields {sorted(expected)}"))
    return problems


def records_to_table(records: Iterable[Mapping[str, Any]], fields: Sequence[InputField]) -> pa.Table:
    """Validate ``records`` against ``fields`` and build the request table (plus ``__row_id``).

    Raises ``InputValidationError`` listing every missing, unexpected or mistyped field.
    """
    return records_to_request(records, fields).table


def records_to_request(records: Iterable[Mapping[str, Any]], fields: Sequence[InputField]) -> Request:
    """``records_to_table`` as a ``Request``: a few plain records stay Python values (no Arrow
    until a step asks for it), more become the Arrow table."""
    records = list(records)
    if not records:
        raise InputValidationError([FieldProblem(0, "records", EMPTY_BATCH)])
    small = len(records) <= _SMALL_BATCH  # Arrow's vectorised checks cost more than they save here
    columns = None if small else _plain_columns(records, [f.name for f in fields])
    if columns is not None:
        return Request.of_table(_columns_table(columns, fields, len(records)))
    problems = _shape_problems(records, frozenset(f.name for f in fields))
    # JSON gives plain dicts, and once every record has exactly the schema's keys a column is a
    # plain item lookup; the general form (any Mapping, missing keys) is for everything else.
    plain = not problems and all(type(r) is dict for r in records)
    if plain and small:
        checked = _checked_columns([[r[f.name] for r in records] for f in fields], fields, problems)
        if checked is not None:
            return Request.of_columns(checked, _request_schema(tuple(fields)))
        problems.sort(key=lambda p: p.record)
        raise InputValidationError(problems)
    columns = [[r[f.name] for r in records] if plain else
               [r.get(f.name, _MISSING) if isinstance(r, Mapping) else _MISSING for r in records] for f in fields]
    return Request.of_table(_columns_table(columns, fields, len(records), fast=not small, problems=problems))


def _plain_columns(records: list[Any], names: list[str]) -> list[list[Any]] | None:
    """The columns when every record is a plain dict with exactly the schema's keys, else None.

    Records of as many keys as the schema, each of whose names every record has, hold exactly
    the schema's keys; anything else goes through ``_shape_problems``, which names the difference.
    """
    if set(map(type, records)) != {dict} or set(map(len, records)) != {len(names)}:
        return None
    try:
        return [[r[name] for r in records] for name in names]
    except KeyError:
        return None


def _columns_table(columns: list[list[Any]], fields: Sequence[InputField], rows: int, *, fast: bool = True,
                   problems: list[FieldProblem] | None = None) -> pa.Table:
    """The request table from its columns; every problem (with ``problems`` found before) is
    raised at once. ``fast`` tries Arrow's vectorised conversion first (worth it past a few rows)."""
    problems = [] if problems is None else problems
    arrays = []
    for values, f in zip(columns, fields):
        array = _fast_column(values, f) if fast else None
        if array is None:
            array = _slow_column(values, f, problems)
        arrays.append(array)
    if problems:
        problems.sort(key=lambda p: p.record)
        raise InputValidationError(problems)
    arrays.append(pa.array(np.arange(rows, dtype=np.int64)))
    return pa.Table.from_arrays(arrays, names=[*(f.name for f in fields), ROW_ID])


def _checked_columns(columns: list[list[Any]], fields: Sequence[InputField],
                     problems: list[FieldProblem]) -> dict[str, list[Any]] | None:
    """A few records' columns checked value by value (as ``_slow_column``) into validated
    Python values; None when a value is refused (its problem added to ``problems``)."""
    out: dict[str, list[Any]] = {}
    for values, f in zip(columns, fields):
        converted = []
        for i, value in enumerate(values):
            checked, problem = _check_value(value, f)
            if problem:
                problems.append(FieldProblem(i, f.name, problem))
            converted.append(checked)
        out[f.name] = converted
    return None if problems else out


def _compatible(col_type: pa.DataType, field: InputField) -> bool:
    return (
        col_type == ARROW_TYPES[field.type]
        or pa.types.is_null(col_type)
        or (field.type == "double" and (pa.types.is_integer(col_type) or pa.types.is_floating(col_type)))
        or (field.type == "integer" and pa.types.is_integer(col_type))
        or (field.type == "string" and pa.types.is_large_string(col_type))
        or (field.type == "timestamp" and pa.types.is_timestamp(col_type))
    )


def _first_index(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _cast_column(col: pa.ChunkedArray, field: InputField) -> tuple[pa.ChunkedArray | None, FieldProblem | None]:
    if not _compatible(col.type, field):
        return None, FieldProblem(0, field.name, f"column type is {col.type}, expected {field.type}")
    try:
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC")).cast(pa.timestamp(col.type.unit))
        col = col.cast(ARROW_TYPES[field.type])
    except pa.ArrowException as exc:
        return None, FieldProblem(0, field.name, f"column cannot be cast to {field.type}: {exc}")
    if not field.nullable and col.null_count:
        return None, FieldProblem(_first_index(col.is_null()), field.name, "is required (not nullable), got null")
    if field.type == "double":
        bad = pc.invert(pc.is_finite(col)).fill_null(False)
        if pc.any(bad).as_py():
            return None, FieldProblem(_first_index(bad), field.name, "expected a finite number, got NaN or infinity")
    return col, None


def arrow_to_request_table(table: pa.Table, fields: Sequence[InputField]) -> pa.Table:
    """Validate an Arrow table's columns and types, then cast it to the request table."""
    names = set(table.column_names)
    expected = {f.name for f in fields}
    problems = [FieldProblem(0, n, "column is missing") for n in sorted(expected - names)]
    problems += [FieldProblem(0, n, "is not an input of this model") for n in sorted(names - expected)]
    if table.num_rows == 0:
        problems.append(FieldProblem(0, "records", EMPTY_BATCH))
    if problems:
        raise InputValidationError(problems)
    arrays = []
    for f in fields:
        col, problem = _cast_column(table.column(f.name), f)
        if problem:
            problems.append(problem)
        arrays.append(col)
    if problems:
        raise InputValidationError(problems)
    arrays.append(pa.chunked_array([np.arange(table.num_rows, dtype=np.int64)]))
    return pa.Table.from_arrays(arrays, names=[*(f.name for f in fields), ROW_ID])


def pandas_to_request_table(frame: Any, fields: Sequence[InputField]) -> pa.Table:
    """Convert a pandas DataFrame column by column (naming a column Arrow cannot type), then check it."""
    columns, problems = {}, []
    for name in frame.columns:
        try:
            columns[str(name)] = pa.array(frame[name], from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            problems.append(FieldProblem(0, _shown(name).strip("'\""), f"column has values of mixed or unsupported types: {exc}"))
    if problems:
        raise InputValidationError(problems)
    return arrow_to_request_table(pa.table(columns) if columns else pa.table({}), fields)


_DECODED_TYPES: dict[str, Any] = {"string": str, "double": int | float, "integer": int, "boolean": bool,
                                  "timestamp": str}
"""What the body decoder reads each field as: JSON's own types (an integer stays an int in a
double field, as the general path keeps it), so nothing is converted before the checks."""


class BatchBodyDecoder:
    """Decode a batch body, ``{"records": [...]}``, straight into the request table, for bodies
    that are plainly valid.

    msgspec reads the JSON into typed records in one pass (strict: a boolean is never a number,
    no field missing, none unknown, null only where nullable), then the columns take the same
    Arrow checks as ``records_to_table``'s fast path. ``decode`` returns None for anything else
    (not JSON msgspec reads, any field's problem, an empty or oversized batch, NUL, non-finite,
    an odd timestamp); the caller then parses the body and calls ``records_to_table``, which
    decides and names every problem. So this decoder only decides how fast a valid batch is
    read, never what is valid: tests hold it to the general path's table on any body.
    """

    def __init__(self, fields: Sequence[InputField]) -> None:
        self._fields = tuple(fields)
        # Attributes are positional (f0, f1...) and renamed to the field's JSON name: a struct's
        # attributes must be identifiers, a landing column need not be (``Sepal.Length``).
        record = msgspec.defstruct("Record", [(f"f{i}", _DECODED_TYPES[f.type] | None if f.nullable
                                               else _DECODED_TYPES[f.type], msgspec.field(name=f.name))
                                              for i, f in enumerate(self._fields)],
                                   forbid_unknown_fields=True, gc=False)  # scalars only: nothing to collect
        batch = msgspec.defstruct("Batch", [("records", list[record])], forbid_unknown_fields=True)
        self._decoder = msgspec.json.Decoder(batch)
        self._encoder = msgspec.json.Encoder()
        self._getters = [attrgetter(f"f{i}") for i in range(len(self._fields))]

    def decode(self, raw: bytes, max_records: int) -> tuple[Request, bytes] | None:
        """(request, the records as a JSON array) for a plainly valid batch body, else None."""
        try:
            records = self._decoder.decode(raw).records
        except msgspec.DecodeError:  # invalid JSON, or not this schema's batch (ValidationError too)
            return None
        if not 0 < len(records) <= max_records:
            return None
        if len(records) <= _SMALL_BATCH:  # a few records: checked value by value, no Arrow yet
            checked = _checked_columns([list(map(g, records)) for g in self._getters], self._fields, [])
            return None if checked is None else (Request.of_columns(checked, _request_schema(self._fields)),
                                                 self._encoder.encode(records))
        arrays = []
        for getter, field in zip(self._getters, self._fields):
            array = _typed_column(list(map(getter, records)), field)
            if array is None:
                return None
            arrays.append(array)
        arrays.append(pa.array(np.arange(len(records), dtype=np.int64)))
        table = pa.Table.from_arrays(arrays, names=[*(f.name for f in self._fields), ROW_ID])
        return Request.of_table(table), self._encoder.encode(records)
