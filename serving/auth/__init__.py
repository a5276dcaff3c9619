"""API keys with scopes for the HTTP server (see docs/auth.md).

``keys``: the key file (hashed keys, scopes) and its parser; ``guard``: the middleware that
checks each request, and the watcher that reloads the file; ``cli``: ``python -m serving.auth``
to issue, list and revoke keys.
"""

from serving.auth.keys import SCOPES, ApiKey, KeyRing, key_digest, parse_key_file, read_key_file

__all__ = ["SCOPES", "ApiKey", "KeyRing", "key_digest", "parse_key_file", "read_key_file"]
