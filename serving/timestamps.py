"""The one timestamp grammar: what the server accepts, and how the prediction log writes it.

A timestamp field is RFC 3339's date-time, with seconds required and at most microseconds, or
a date alone (midnight)::

    YYYY-MM-DD [ ("T" | "t" | " ") HH:MM:SS [ "." 1-6 digits ] [ "Z" | "z" | ("+" | "-") HH:MM ] ]

No offset means UTC (the landing files hold naive UTC). The values must exist (no February 30,
hour 24, second 60 or offset of 24 hours) and the instant must fall in years 1 to 9999 once in
UTC. Everything else Python's ``fromisoformat`` would take (week dates ``2026-W05-5``, basic
``20260201T100000``, ordinal dates, hours alone, ``+0530``, seven fraction digits, a trailing NUL
or newline, non-ASCII digits) is refused, naming the field.

The server logs each record's timestamps as it read them, canonical UTC
(``2026-01-31T20:00:00.000000Z``, ``timestamps_utc`` in the log line), and dbt's staging reads
those; a line without them (an older server's) is parsed by the dbt macro ``utc_timestamp``,
which implements this same grammar in SQL. Tests hold both sides to each other on generated strings.
"""

from __future__ import annotations

import datetime as dt
import re

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from serving.request import Request

GRAMMAR = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?)"
                     r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?")
"""The grammar above (ASCII digits only: ``[0-9]``, not ``\\d``); matched whole (``fullmatch``)."""
FORM = "YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+HH:MM|-HH:MM] or YYYY-MM-DD (RFC 3339, e.g. '2026-01-05T13:45:00Z')"
"""How error messages describe the grammar."""
LOG_FIELD = "timestamps_utc"
"""The log line's field: per record, an object of its timestamp fields in canonical UTC."""


def parse_timestamp(text: str) -> dt.datetime:
    """The instant ``text`` names, as a naive UTC datetime; ``ValueError`` saying why when it is
    outside the grammar, names no real time, or leaves years 1 to 9999 once in UTC."""
    match = GRAMMAR.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a timestamp {FORM}")
    date, time, offset = match.groups()
    zone = "+00:00" if offset is None or offset in "Zz" else offset
    try:
        value = dt.datetime.fromisoformat(f"{date}T{time or '00:00:00'}{zone}")
    except ValueError as exc:
        raise ValueError(f"expected a real date and time in the form {FORM} ({exc})") from None
    try:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None


def canonical_utc(value: dt.datetime | None) -> str | None:
    """A naive UTC datetime in the log's canonical form, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return None if value is None else value.isoformat(timespec="microseconds") + "Z"


def timestamps_json(request: Request) -> bytes | None:
    """The log line's ``timestamps_utc``: a JSON array, record for record, of objects holding each
    timestamp field as the server read it, in canonical UTC; None when the schema has no timestamp.
    From the request's Python values when it holds them (a few records), else its Arrow table."""
    names = [f.name for f in request.schema if pa.types.is_timestamp(f.type)]
    if not names:
        return None
    if request.has_values:
        texts = [[canonical_utc(v) for v in request.values(name)] for name in names]
    else:
        texts = [_canonical_column(request.table.column(name)) for name in names]
    return orjson.dumps([dict(zip(names, row)) for row in zip(*texts)])


def _canonical_column(column: pa.ChunkedArray) -> list[str | None]:
    """A timestamp column's values in canonical form, vectorised: Arrow writes ``YYYY-MM-DD
    HH:MM:SS.ffffff`` for microseconds, which becomes ``...THH:MM:SS.ffffffZ``."""
    text = column.cast(pa.timestamp("us")).cast(pa.string())
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, start=10, stop=11, replacement="T"), "Z", "").to_pylist()
