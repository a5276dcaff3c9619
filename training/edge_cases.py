"""Edge values for raw fields: what the fused gate replays next to held-out rows and what the
compiler's differential fuzzer draws from (tests/unit/fused_grammar.py), so a case the fuzzer
found is tried on every bundle too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

TEXT = ["", "   ", " zz_unseen_category ", "ZZ", "O'Brien; drop table x", "ünïcödé", "İOS", "ıt", "ioſ", "K", "straße",
        "STRAẞE", "\u3000terminal", "\u00a0ios\u00a0", " IoS ", "\tios", "ios\n", "ΣΑΣ", "σας", "a  b", "\u2003k\u2003",
        "ǅ", "ﬁ", "42", "-7", "042", "0", " 7", "1e3", "0x1F", "1_000", "12.5", "x" * 40]
"""Unicode spaces DuckDB's trim strips (U+00A0, U+3000, U+2003) and tabs it does not; the four
characters whose case maps into ASCII (İ, ı, ſ, K); multi-script text; number-like text."""
DOUBLE = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 2.675, 0.125, 1e-9, 1e-300, -1e-300, 1e12, 1e300, -1e300,
          1.7976931348623157e308, 5e-324, 2147483647.5, -2147483648.5, 9007199254740993.0, 1e16, 123456.789, 0.1,
          86400.0, 4503599627370495.5]
"""Halves (rounding), values at float32's and int32's edges, subnormals, past 2**53."""
INTEGER = [0, 1, -1, 2, 7, -7, 42, 2**31 - 1, -2**31, 2**31, 2**40, 2**53, 2**53 + 1, -2**53 - 1, 2**62, -2**63 + 1,
           2**63 - 1, 86400, 1000]
"""int32's edges (DuckDB raises on INTEGER overflow), 2**53 (float64's exact limit), int64's edges."""
TIMESTAMP = [dt.datetime(1970, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999), dt.datetime(2026, 3, 29, 0, 0),
             dt.datetime(2026, 3, 29, 1, 30), dt.datetime(2026, 10, 25, 0, 59, 59), dt.datetime(2026, 11, 1, 6, 0),
             dt.datetime(2024, 2, 29, 12), dt.datetime(2100, 2, 28, 23), dt.datetime(2000, 1, 1), dt.datetime(1, 1, 1),
             dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(1600, 3, 1), dt.datetime(1900, 2, 28),
             dt.datetime(2026, 12, 31, 23, 59, 59, 500000), dt.datetime(1582, 10, 15), dt.datetime(2255, 6, 6, 6, 6, 6, 6)]
"""Midnight, DST switch days (UTC timestamps: nothing may shift), leap days, pre-1970, far years."""
BY_TYPE: dict[str, list[Any]] = {"string": TEXT, "double": DOUBLE, "integer": INTEGER, "timestamp": TIMESTAMP,
                                 "boolean": [True, False]}


def variants(text: str) -> list[str]:
    """Spellings of a known value that DuckDB's TRIM/LOWER/UPPER may or may not fold onto it."""
    return [f"\u3000{text}", f"{text}\u00a0", f"\t{text}", text.upper(), text.swapcase(), text.replace("i", "İ"),
            text.replace("I", "ı").replace("i", "ı"), text.replace("s", "ſ"), text.replace("k", "K")]


def edge_case_rows(raw: pa.Table, fields: list[Any], seed: int, rows: int = 50) -> pa.Table:
    """Raw rows with one field each set to an edge case (``BY_TYPE``, NULL where allowed, and
    Unicode variants of the field's own landed values)."""
    rng = np.random.default_rng(seed)
    base = raw.slice(0, min(rows, raw.num_rows)).to_pylist()
    out = []
    for field in fields:
        seen = sorted({str(r[field.name]) for r in base if r.get(field.name) is not None})[:5] if field.type == "string" else []
        for value in BY_TYPE.get(field.type, []) + [v for s in seen for v in variants(s)] + ([None] if field.nullable else []):
            row = dict(base[int(rng.integers(len(base)))])
            row[field.name] = value
            out.append(row)
    return pa.Table.from_pylist(out, schema=raw.schema)
