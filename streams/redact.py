"""Keyed hashes: how an account appears in logs, audit keys and metrics-free traces.

An account number or psid never appears in clear outside the records the
customer consented to. Where something must identify an account (a log line,
the audit topic's key), it is an HMAC-SHA256 under a configured key, prefixed
by the key's id so that a rotated key is visible: `k0:1f2e3d4c5b6a7988`.
"""

from __future__ import annotations

import hashlib
import hmac

# 64 bits: collisions are negligible at millions of accounts, and the hash
# stays short enough to read in a log line.
DIGEST_HEX_CHARS = 16


class KeyedHasher:
    """Hashes identifiers under one key; the same input gives the same output."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: str, key_id: str) -> None:
        if not key:
            raise ValueError("the hash key must not be empty")
        self._key = key.encode()
        self.key_id = key_id

    def __repr__(self) -> str:
        return f"KeyedHasher(key_id={self.key_id!r})"

    def digest(self, *parts: str) -> str:
        """The keyed hash of the parts, joined by a separator that parts cannot forge."""
        message = "\x1f".join(parts).encode()
        mac = hmac.new(self._key, message, hashlib.sha256).hexdigest()[:DIGEST_HEX_CHARS]
        return f"{self.key_id}:{mac}"

    def account(self, bank_id: str, account_id: str) -> str:
        """The hash that stands for one bank account wherever it must be named."""
        return self.digest("account", bank_id, account_id)

    def psid(self, psid: str) -> str:
        """The hash that stands for one customer's psid on the audit trail."""
        return self.digest("psid", psid)
