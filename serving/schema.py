"""Turn request records into an Arrow table that matches the bundle's raw input schema.

Validation is strict and complete: every problem in every record is reported (record index,
field, expected and actual), and nothing is coerced silently. Integers are accepted for double
fields (JSON does not distinguish 5 from 5.0); booleans are never numbers; timestamps are
ISO-8601 strings or ``datetime`` values, converted to naive UTC as the landing files hold them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from serving.bundle import InputField
from serving.errors import FieldProblem, InputValidationError

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "double": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us"),
}
ROW_ID = "__row_id"


def arrow_schema(fields: Sequence[InputField]) -> pa.Schema:
    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type], nullable=f.nullable) for f in fields])


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_value(value: Any, field: InputField) -> tuple[Any, str | None]:
    """Return (converted value, problem or None)."""
    if value is None:
        return None, None if field.nullable else f"is required (not nullable), got null"
    kind = field.type
    if kind == "string":
        if isinstance(value, str):
            return value, None
    elif kind == "double":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value), None
            return None, f"expected a finite number, got {value!r}"
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            if -(2**63) <= value < 2**63:
                return value, None
            return None, f"expected a 64-bit integer, got {value!r}"
    elif kind == "boolean":
        if isinstance(value, bool):
            return value, None
    elif kind == "timestamp":
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                return None, f"expected an ISO-8601 timestamp such as '2026-01-05T13:45:00Z', got {value!r}"
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return value, None
    return None, f"expected {kind}, got {_type_name(value)} {value!r}"[:200]


def records_to_table(records: Iterable[Mapping[str, Any]], fields: Sequence[InputField]) -> pa.Table:
    """Validate ``records`` against ``fields`` and build the request table (plus ``__row_id``).

    Raises ``InputValidationError`` listing every missing, unexpected or mistyped field.
    """
    records = list(records)
    if not records:
        raise InputValidationError([FieldProblem(0, "records", "the batch is empty; send at least one record")])
    expected = {f.name for f in fields}
    problems: list[FieldProblem] = []
    columns: dict[str, list[Any]] = {f.name: [] for f in fields}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            problems.append(FieldProblem(i, "<record>", f"expected an object of fields, got {_type_name(record)}"))
            continue
        keys = set(record)
        if keys != expected:
            for name in sorted(expected - keys):
                problems.append(FieldProblem(i, name, "is missing"))
            for name in sorted(keys - expected, key=str):
                problems.append(FieldProblem(i, str(name), f"is not an input of this model; expected fields {sorted(expected)}"))
        for f in fields:
            if f.name not in record:
                continue
            converted, problem = _check_value(record[f.name], f)
            if problem:
                problems.append(FieldProblem(i, f.name, problem))
            columns[f.name].append(converted)
    if problems:
        raise InputValidationError(problems)
    arrays = [pa.array(columns[f.name], type=ARROW_TYPES[f.type]) for f in fields]
    arrays.append(pa.array(range(len(records)), type=pa.int64()))
    return pa.Table.from_arrays(arrays, names=[*(f.name for f in fields), ROW_ID])


def arrow_to_request_table(table: pa.Table, fields: Sequence[InputField]) -> pa.Table:
    """Validate an Arrow table's columns and types, then cast it to the request table."""
    names = set(table.column_names)
    expected = {f.name for f in fields}
    problems = [FieldProblem(0, n, "column is missing") for n in sorted(expected - names)]
    problems += [FieldProblem(0, n, "is not an input of this model") for n in sorted(names - expected)]
    if table.num_rows == 0:
        problems.append(FieldProblem(0, "records", "the batch is empty; send at least one record"))
    if problems:
        raise InputValidationError(problems)
    arrays = []
    for f in fields:
        col = table.column(f.name)
        target = ARROW_TYPES[f.type]
        compatible = (
            col.type == target
            or pa.types.is_null(col.type)
            or (f.type == "double" and (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)))
            or (f.type == "integer" and pa.types.is_integer(col.type))
            or (f.type == "string" and pa.types.is_large_string(col.type))
            or (f.type == "timestamp" and pa.types.is_timestamp(col.type))
        )
        if not compatible:
            problems.append(FieldProblem(0, f.name, f"column type is {col.type}, expected {f.type}"))
            continue
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC")).cast(pa.timestamp(col.type.unit))
        col = col.cast(target)
        if not f.nullable and col.null_count:
            first = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
            problems.append(FieldProblem(first, f.name, "is required (not nullable), got null"))
        arrays.append(col)
    if problems:
        raise InputValidationError(problems)
    arrays.append(pa.array(range(table.num_rows), type=pa.int64()))
    return pa.Table.from_arrays(arrays, names=[*(f.name for f in fields), ROW_ID])
