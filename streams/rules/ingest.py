"""Who may speak for which account: the checks ingest makes before re-keying.

A bank speaks only through its own topic: the `bank_id` of a transaction must
be the bank its topic names, and its `account_id` the record's key. A consent
is keyed `<bank_id>:<account_id>` and must say the same inside. Every record
that passes is keyed `<bank_id>:<account_id>` in the per-account stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.model import Consent, Transaction

# DLQ reason codes of ingest (the codec adds its own: streams.errors).
BANK_MISMATCH = "BANK_MISMATCH"
KEY_MISMATCH = "KEY_MISMATCH"
BAD_KEY = "BAD_KEY"


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


def account_key(bank_id: str, account_id: str) -> bytes:
    """The key of an account in the per-account stream and in consents.v1."""
    return f"{bank_id}:{account_id}".encode()


def check_transaction(topic_bank: str, key: bytes | None, tx: Transaction) -> Rejected | None:
    if tx["bank_id"] != topic_bank:
        return Rejected(BANK_MISMATCH, "bank_id differs from the bank its topic names")
    if key is None or key.decode(errors="replace") != tx["account_id"]:
        return Rejected(KEY_MISMATCH, "account_id differs from the record key")
    return None


def split_consent_key(key: bytes | None) -> tuple[str, str] | Rejected:
    """`<bank_id>:<account_id>` from a consents.v1 key."""
    text = key.decode(errors="replace") if key else ""
    bank_id, sep, account_id = text.partition(":")
    if not (sep and bank_id and account_id):
        return Rejected(BAD_KEY, "consent key is not <bank_id>:<account_id>")
    return bank_id, account_id


def check_consent(bank_id: str, account_id: str, consent: Consent) -> Rejected | None:
    if (consent["bank_id"], consent["account_id"]) != (bank_id, account_id):
        return Rejected(KEY_MISMATCH, "consent names another account than its key")
    return None
