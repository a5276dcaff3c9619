"""Reading a request body: JSON parsing (orjson where it agrees with the standard library), the
nesting limit, and the ASCII-safe JSON of error answers.

A record is one flat object of fields, so a body that nests arrays or objects past
``MAX_NESTING`` is refused as a 400 before anything walks it: validation renders rejected values
in its messages, and a value nested a thousand deep would exhaust Python's recursion limit there
(a 500) rather than be named.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_NESTING = 32
"""Deepest nesting of arrays and objects accepted (a batch is 3: ``{"records": [{...}]}``)."""
TOO_DEEP = (f"request body nests arrays or objects more than {MAX_NESTING} levels deep; a record is one flat "
            "JSON object of fields (a batch is {\"records\": [...]}), send the fields as plain values")

# Byte -> b"0" for ASCII digits, b"." for anything else: a run of 19 digits shows an integer that
# orjson would read as a float (past 64 bits) where the standard library keeps an int.
_DIGIT_RUNS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def parse_json(raw: bytes) -> Any:
    """``json.loads(raw)``, faster: orjson reads the body when it would give the same values.

    orjson refuses what the standard library accepts beyond RFC 8259 (NaN and Infinity, lone
    surrogates, a byte-order mark, UTF-16 and UTF-32, nesting past 1024), so those bodies, and
    any with an integer literal of 19 digits or more (which orjson turns into a float past 64
    bits), are read by ``json.loads``, which raises what it raised before for invalid JSON.
    """
    if _LONG_DIGIT_RUN not in raw.translate(_DIGIT_RUNS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def nests_too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether arrays and objects in ``value`` nest more than ``limit`` levels (an iterative walk:
    it never recurses, whatever the depth, and stops at the first container past the limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def json_bytes(content: Any) -> bytes:
    """JSON with every non-ASCII character escaped, so any echoed input (even a lone surrogate) encodes."""
    return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
