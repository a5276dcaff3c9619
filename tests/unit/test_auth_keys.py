"""The API key file: its parser's errors, key lookup, scope decisions, reload, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.auth.cli import main as auth_cli
from serving.auth.guard import Grant, KeyWatcher, decide
from serving.auth.keys import ApiKey, KeyRing, key_digest, parse_key_file, read_key_file
from serving.errors import KeyFileError

GOOD_HASH = key_digest("sk_test").hex()


def _file(keys: object, version: object = 1) -> str:
    return json.dumps({"format_version": version, "keys": keys})


def _problems(text: str) -> list[tuple[str, str, str]]:
    with pytest.raises(KeyFileError) as caught:
        parse_key_file(text, "keys.json")
    assert str(caught.value).startswith("API key file keys.json: ")
    assert "docs/auth.md" in str(caught.value)
    return [(p.field, p.expected, p.actual) for p in caught.value.problems]


def test_a_well_formed_file_parses() -> None:
    ring = parse_key_file(_file({"ci": {"sha256": GOOD_HASH, "scopes": ["score", "admin"]}}), "keys.json")
    assert ring == KeyRing((ApiKey("ci", key_digest("sk_test"), frozenset({"score", "admin"})),))


@pytest.mark.parametrize(("text", "field", "expected_part", "actual_part"), [
    ("{not json", "$", "JSON document", "invalid JSON"),
    ("[1, 2]", "$", "format_version and keys", "array [1, 2]"),
    (_file({}, version=2), "format_version", "1", "number 2"),
    (_file([]), "keys", "key id -> {sha256, scopes}", "array []"),
    (_file({"ci": "sk_plain"}), "keys.ci", "{sha256, scopes}", 'string "sk_plain"'),
    (_file({"ci": {"sha256": "sk_plain_key", "scopes": ["score"]}}), "keys.ci.sha256", "64 lowercase hex", '"sk_plain_key"'),
    (_file({"ci": {"sha256": GOOD_HASH, "scopes": ["scores"]}}), "keys.ci.scopes", "'score+record'", '["scores"]'),
    (_file({"ci": {"sha256": GOOD_HASH, "scopes": []}}), "keys.ci.scopes", "non-empty list", "array []"),
    (_file({"ci": {"sha256": GOOD_HASH, "scopes": ["score"], "key": "x"}}), "keys.ci", "exactly the fields", "'key'"),
    (_file({"c i": {"sha256": GOOD_HASH, "scopes": ["score"]}}), "keys.c i", "key id of 1-64", "'c i'"),
])
def test_a_malformed_file_names_field_expected_and_actual(text: str, field: str, expected_part: str,
                                                          actual_part: str) -> None:
    problems = _problems(text)
    assert any(f == field and expected_part in e and actual_part in a for f, e, a in problems), problems


def test_every_bad_field_is_reported_at_once() -> None:
    problems = _problems(_file({"a": {"sha256": "x", "scopes": ["score"]}, "b": {"sha256": GOOD_HASH, "scopes": "admin"}}))
    assert [f for f, _, _ in problems] == ["keys.a.sha256", "keys.b.scopes"]


def test_an_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"missing\.json: field '\$': expected a readable file, got FileNotFoundError"):
        read_key_file(tmp_path / "missing.json")


def test_identify_finds_the_key_by_its_hash_only() -> None:
    ring = KeyRing((ApiKey("a", key_digest("sk_a"), frozenset({"score"})),
                    ApiKey("b", key_digest("sk_b"), frozenset({"admin"}))))
    assert ring.identify("sk_b").key_id == "b"  # type: ignore[union-attr]
    assert ring.identify("sk_c") is None
    assert ring.identify(key_digest("sk_a").hex()) is None  # the stored hash is not a key


RING = KeyRing((ApiKey("reader", key_digest("sk_r"), frozenset({"score"})),
                ApiKey("writer", key_digest("sk_w"), frozenset({"score+record"})),
                ApiKey("ops", key_digest("sk_o"), frozenset({"admin"}))))


@pytest.mark.parametrize(("path", "key", "expected"), [
    ("/predict", None, (401, "missing_key")),
    ("/predict", "sk_nope", (401, "unknown_key")),
    ("/predict", "sk_o", (403, "wrong_scope")),
    ("/predict", "sk_r", Grant("reader", record=False)),
    ("/predict", "sk_w", Grant("writer", record=True)),
    ("/metadata", "sk_w", (403, "wrong_scope")),
    ("/metrics", "sk_r", (403, "wrong_scope")),
    ("/metrics", "sk_o", Grant("ops", record=False)),
    ("/openapi.json", "sk_r", Grant("reader", record=False)),
    ("/openapi.json", None, (401, "missing_key")),
])
def test_decide(path: str, key: str | None, expected: object) -> None:
    decision = decide(RING, path, key)
    if isinstance(expected, Grant):
        assert decision == expected
    else:
        assert isinstance(decision, tuple) and decision[:2] == expected
        needed = {"/predict": "score+record or score", "/metadata": "admin", "/metrics": "admin"}.get(path, "any scope")
        assert needed in decision[2]
        assert key is None or key not in decision[2]  # never echo a key


def test_the_watcher_swaps_in_a_changed_file_and_keeps_the_old_keys_on_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert auth_cli(["issue", "--file", str(path), "--id", "a", "--scopes", "score"]) == 0
    watcher = KeyWatcher(path, interval_s=0)
    assert [k.key_id for k in watcher.ring.keys] == ["a"] and watcher.check_once() is None
    assert auth_cli(["issue", "--file", str(path), "--id", "b", "--scopes", "score+record,admin"]) == 0
    assert watcher.check_once() == "reloaded" and [k.key_id for k in watcher.ring.keys] == ["a", "b"]
    path.write_text("{half a file")
    assert watcher.check_once() == "refused" and [k.key_id for k in watcher.ring.keys] == ["a", "b"]
    assert auth_cli(["revoke", "--file", str(path.with_name("other.json")), "--id", "a"]) == 2


def test_the_cli_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.json"
    assert auth_cli(["issue", "--file", str(path), "--id", "ci", "--scopes", "score+record"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("sk_") and key not in path.read_text()
    assert read_key_file(path)[0].identify(key).key_id == "ci"  # type: ignore[union-attr]
    assert path.stat().st_mode & 0o077 == 0
    assert auth_cli(["issue", "--file", str(path), "--id", "ci", "--scopes", "score"]) == 2  # no silent overwrite
    assert auth_cli(["revoke", "--file", str(path), "--id", "ci"]) == 0
    assert read_key_file(path)[0].identify(key) is None
    with pytest.raises(SystemExit):
        auth_cli(["issue", "--file", str(path), "--id", "x", "--scopes", "everything"])
