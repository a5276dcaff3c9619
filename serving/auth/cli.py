"""``python -m serving.auth``: issue, list and revoke the server's API keys.

    python -m serving.auth issue --file keys.json --id ci --scopes score+record
    python -m serving.auth list --file keys.json
    python -m serving.auth revoke --file keys.json --id ci

``issue`` prints the new key once, on stdout; only its SHA-256 is written. The file is replaced
atomically, and a server started with ``--api-keys keys.json`` picks the change up within its
reload interval, without a restart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.auth.keys import KEY_ID, SCOPES, ApiKey, KeyRing, key_digest, new_key, read_key_file, write_key_file
from serving.errors import KeyFileError


def _ring(path: Path) -> KeyRing:
    return read_key_file(path)[0] if path.exists() else KeyRing()


def _scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise argparse.ArgumentTypeError(f"scopes are a comma-separated list among {list(SCOPES)}, got {text!r}")
    return scopes


def _key_id(text: str) -> str:
    if not KEY_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a key id is 1-64 letters, digits, '.', '_' or '-', got {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.auth", description="Manage serve-model's API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="add a key and print it once")
    issue.add_argument("--id", type=_key_id, required=True, help="the key's name, as the prediction log records it")
    issue.add_argument("--scopes", type=_scopes, required=True,
                       help=f"comma-separated, among {', '.join(SCOPES)} (e.g. score+record,admin)")
    issue.add_argument("--replace", action="store_true", help="replace a key of the same id (else refused)")
    revoke = commands.add_parser("revoke", help="remove a key")
    revoke.add_argument("--id", type=_key_id, required=True)
    listing = commands.add_parser("list", help="key ids and scopes (never keys)")
    for sub in (issue, revoke, listing):
        sub.add_argument("--file", type=Path, required=True, help="the key file (serve-model --api-keys FILE)")
    args = parser.parse_args(argv)
    try:
        ring = _ring(args.file)
    except KeyFileError as exc:
        print(f"serving.auth: {exc}", file=sys.stderr)
        return 2
    known = {k.key_id for k in ring.keys}
    if args.command == "list":
        for k in ring.keys:
            print(f"{k.key_id}\t{','.join(sorted(k.scopes))}")
        return 0
    if args.command == "revoke":
        if args.id not in known:
            print(f"serving.auth: no key {args.id!r} in {args.file} (known: {sorted(known)})", file=sys.stderr)
            return 2
        write_key_file(args.file, ring.without(args.id))
        print(f"revoked {args.id!r}; servers refuse it within their reload interval", file=sys.stderr)
        return 0
    if args.id in known and not args.replace:
        print(f"serving.auth: {args.file} already has a key {args.id!r}; to rotate, issue a new id, move clients to "
              "it, then revoke the old one (or pass --replace to swap it at once)", file=sys.stderr)
        return 2
    key = new_key()
    write_key_file(args.file, ring.with_key(ApiKey(args.id, key_digest(key), args.scopes)))
    print(key)
    print(f"issued {args.id!r} with scopes {sorted(args.scopes)}; the key above is shown once and not stored",
          file=sys.stderr)
    return 0
