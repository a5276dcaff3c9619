"""The API key file: key ids, the SHA-256 of each key, and its scopes. No key is ever stored.

```json
{"format_version": 1,
 "keys": {"ci": {"sha256": "<64 hex digits>", "scopes": ["score+record"]}}}
```

JSON only: the serving runtime stays light (no YAML parser), and the file is written by
``python -m serving.auth``, not by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.errors import KeyFileError, KeyFileProblem

FORMAT_VERSION = 1
SCOPES = ("score", "score+record", "admin")
"""``score``: /predict reads entity state, writes nothing; ``score+record``: /predict also records
the event into state; ``admin``: /metadata, /metrics."""
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
KEY_PREFIX = "sk_"


def key_digest(key: str) -> bytes:
    """The SHA-256 of a key's UTF-8 bytes, as the key file holds it (hex)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def new_key() -> str:
    """A fresh key: 256 random bits, URL-safe, prefixed so scanners and people recognise it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One entry of the key file."""

    key_id: str
    """The key's name: what the prediction log and the server log show, never the key."""
    digest: bytes
    """SHA-256 of the key (32 bytes)."""
    scopes: frozenset[str]
    """Among ``SCOPES``."""

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.digest.hex(), "scopes": sorted(self.scopes)}


@dataclass(frozen=True)
class KeyRing:
    """The keys the server accepts."""

    keys: tuple[ApiKey, ...] = ()
    """In file order."""

    def identify(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None. Compares its digest with every entry in constant
        time, without stopping at a match, so timing tells nothing about any key."""
        digest = key_digest(presented)
        found = None
        for entry in self.keys:
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return found

    def with_key(self, entry: ApiKey) -> KeyRing:
        return KeyRing((*(k for k in self.keys if k.key_id != entry.key_id), entry))

    def without(self, key_id: str) -> KeyRing:
        return KeyRing(tuple(k for k in self.keys if k.key_id != key_id))

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "keys": {k.key_id: k.to_json() for k in self.keys}}


def _kind(value: Any) -> str:
    """A value as a problem shows it: its JSON type and (shortened) text."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
             type(None): "null"}
    text = json.dumps(value)
    return f"{names.get(type(value), type(value).__name__)} {text if len(text) <= 80 else text[:77] + '...'}"


def parse_key_file(text: str, where: str) -> KeyRing:
    """The key ring a key file's text holds; ``KeyFileError`` naming every bad field otherwise."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(where, [KeyFileProblem("$", "a JSON document", f"invalid JSON ({exc})")]) from None
    if not isinstance(doc, dict):
        raise KeyFileError(where, [KeyFileProblem("$", "an object with format_version and keys", _kind(doc))])
    problems: list[KeyFileProblem] = []
    if doc.get("format_version") != FORMAT_VERSION:
        problems.append(KeyFileProblem("format_version", str(FORMAT_VERSION), _kind(doc.get("format_version"))))
    extra = sorted(set(doc) - {"format_version", "keys"})
    if extra:
        problems.append(KeyFileProblem("$", "only format_version and keys", f"also {extra}"))
    keys = doc.get("keys")
    if not isinstance(keys, dict):
        problems.append(KeyFileProblem("keys", "an object of key id -> {sha256, scopes}", _kind(keys)))
        raise KeyFileError(where, problems)
    entries = []
    for key_id, entry in keys.items():
        at = f"keys.{key_id}"
        if not KEY_ID.fullmatch(key_id):
            problems.append(KeyFileProblem(at, "a key id of 1-64 letters, digits, '.', '_' or '-'", repr(key_id)))
        if not isinstance(entry, dict):
            problems.append(KeyFileProblem(at, "an object {sha256, scopes}", _kind(entry)))
            continue
        if sorted(entry) != ["scopes", "sha256"]:
            problems.append(KeyFileProblem(at, "exactly the fields scopes and sha256", str(sorted(entry))))
        digest = entry.get("sha256")
        if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            problems.append(KeyFileProblem(f"{at}.sha256", "64 lowercase hex digits (the SHA-256 of the key, "
                                           "never the key itself)", _kind(digest)))
        scopes = entry.get("scopes")
        if not (isinstance(scopes, list) and scopes and all(s in SCOPES for s in scopes)):
            problems.append(KeyFileProblem(f"{at}.scopes", f"a non-empty list among {list(SCOPES)}", _kind(scopes)))
        if not problems:
            entries.append(ApiKey(key_id, bytes.fromhex(digest), frozenset(scopes)))
    if problems:
        raise KeyFileError(where, problems)
    return KeyRing(tuple(entries))


def read_key_file(path: Path) -> tuple[KeyRing, bytes]:
    """The key ring in ``path`` and the bytes it was read from."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(str(path), [KeyFileProblem("$", "a readable file", f"{type(exc).__name__}: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyFileError(str(path), [KeyFileProblem("$", "UTF-8 text", str(exc))]) from None
    return parse_key_file(text, str(path)), raw


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Replace ``path`` atomically (a temporary file renamed over it, mode 0600), so a server
    polling it reads the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(ring.to_json(), out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
