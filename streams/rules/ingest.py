"""Who may speak for which account: the checks ingest makes before re-keying.

A bank speaks only through its own topic: the `bank_id` of a transaction must
be the bank its topic names, and its `account_id` the record's key. A consent
is keyed `<bank_id>:<account_id>` and must say the same inside. Every record
that passes is keyed `<bank_id>:<account_id>` in the per-account stream.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass

from streams.model import Consent, InboundMessage, Transaction
from streams.rules.money import is_currency, is_locale

# DLQ reason codes of ingest (the codec adds its own: streams.errors).
BANK_MISMATCH = "BANK_MISMATCH"
KEY_MISMATCH = "KEY_MISMATCH"
BAD_KEY = "BAD_KEY"
BAD_CURRENCY = "BAD_CURRENCY"
BAD_AMOUNT = "BAD_AMOUNT"
BAD_TIMESTAMP = "BAD_TIMESTAMP"
NO_VALUE = "NO_VALUE"
TOO_LARGE = "TOO_LARGE"
FIELD_TOO_LONG = "FIELD_TOO_LONG"
BAD_TIMEZONE = "BAD_TIMEZONE"
BAD_LOCALE = "BAD_LOCALE"
BAD_THRESHOLD = "BAD_THRESHOLD"
BAD_QUIET_HOURS = "BAD_QUIET_HOURS"
EMPTY_MESSAGE = "EMPTY_MESSAGE"
# The stage's second line: a record that passed these checks and still made a
# handler raise (agents dead-letter it and go on).
PROCESSING_ERROR = "PROCESSING_ERROR"

# A transaction or consent frame is a few hundred bytes; anything this large is
# not one, and is dead-lettered before any decoding.
MAX_FRAME_BYTES = 64 * 1024
# The longest text each field may hold; a bank sending more has a bug, and a
# chat message has no room for it anyway.
MAX_TEXT = {
    "transaction_id": 128,
    "account_id": 64,
    "pending_transaction_id": 128,
    "reversed_transaction_id": 128,
    "merchant_name": 256,
    "description": 512,
    "mcc": 8,
    "consent_id": 128,
    "psid": 64,
    "page_id": 64,
    "locale": 35,
    "timezone": 64,
    "mid": 128,
    "text": 2000,  # Messenger's own limit on a message's text
    "payload": 1000,  # and on a quick reply's payload
}

# No retail transaction moves more than this (10^12 minor units: ten billion
# euros); anything larger is a unit or encoding error at the bank.
MAX_ABS_AMOUNT_MINOR = 10**12
# Booked before 2000, or more than a day ahead of the record's arrival, is not
# a real booking date.
EARLIEST_BOOKED_AT = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_MS = 86_400_000
# The IANA zones this machine's tz database knows, read once: a consent's time
# zone is used for every local day and quiet hour of its account.
TIMEZONES = frozenset(zoneinfo.available_timezones())
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


def account_key(bank_id: str, account_id: str) -> bytes:
    """The key of an account in the per-account stream and in consents.v1."""
    return f"{bank_id}:{account_id}".encode()


def named_account(bank_id: str | None, key: bytes | None) -> bytes | None:
    """The per-account key a rejected bank record names (its topic's bank, its key), or
    None: no key, or one that cannot be an account number. Its dead letter is kept
    sealed under that account's key, so it goes with the account's erasure."""
    if bank_id is None or not key or len(key) > 4 * MAX_TEXT["account_id"]:
        return None
    try:
        account_id = key.decode()
    except UnicodeDecodeError:
        return None
    return account_key(bank_id, account_id) if len(account_id) <= MAX_TEXT["account_id"] else None


def check_frame(value: bytes | None) -> Rejected | None:
    """Why a record's value cannot be a frame of ours, before decoding it."""
    if value is None:
        return Rejected(NO_VALUE, "a record without a value (tombstone) on an ingest topic")
    if len(value) > MAX_FRAME_BYTES:
        return Rejected(TOO_LARGE, f"value of {len(value)} bytes exceeds {MAX_FRAME_BYTES}")
    return None


def check_lengths(record: Transaction | Consent | InboundMessage) -> Rejected | None:
    for name, limit in MAX_TEXT.items():
        value = record.get(name)
        if isinstance(value, str) and len(value) > limit:
            return Rejected(FIELD_TOO_LONG, f"{name} is longer than {limit} characters")
    return None


def check_transaction(
    topic_bank: str, key: bytes | None, tx: Transaction, arrived_ms: int
) -> Rejected | None:
    """Why a decoded transaction must not enter the pipeline, or None."""
    too_long = check_lengths(tx)
    if too_long:
        return too_long
    if tx["bank_id"] != topic_bank:
        return Rejected(BANK_MISMATCH, "bank_id differs from the bank its topic names")
    if key is None or key.decode(errors="replace") != tx["account_id"]:
        return Rejected(KEY_MISMATCH, "account_id differs from the record key")
    if not is_currency(tx["currency"]):
        return Rejected(BAD_CURRENCY, "currency is not an ISO 4217 code")
    if abs(tx["amount_minor"]) > MAX_ABS_AMOUNT_MINOR:
        return Rejected(BAD_AMOUNT, "amount_minor is beyond any real transaction")
    if not EARLIEST_BOOKED_AT <= tx["booked_at"] <= arrived_ms + MAX_FUTURE_MS:
        return Rejected(BAD_TIMESTAMP, "booked_at is before 2000 or more than a day ahead")
    return None


def split_consent_key(key: bytes | None) -> tuple[str, str] | Rejected:
    """`<bank_id>:<account_id>` from a consents.v1 key."""
    text = key.decode(errors="replace") if key else ""
    bank_id, sep, account_id = text.partition(":")
    if not (sep and bank_id and account_id):
        return Rejected(BAD_KEY, "consent key is not <bank_id>:<account_id>")
    return bank_id, account_id


def named_consent_account(key: bytes | None) -> bytes | None:
    """The per-account key a rejected consent's key names, or None (as `named_account`)."""
    try:
        bank_id, sep, account_id = (key or b"").decode().partition(":")
    except UnicodeDecodeError:
        return None
    if not (sep and 0 < len(bank_id) <= MAX_TEXT["account_id"]):
        return None
    return named_account(bank_id, account_id.encode())


def check_consent(bank_id: str, account_id: str, consent: Consent) -> Rejected | None:
    too_long = check_lengths(consent)
    if too_long:
        return too_long
    if (consent["bank_id"], consent["account_id"]) != (bank_id, account_id):
        return Rejected(KEY_MISMATCH, "consent names another account than its key")
    if consent["timezone"] not in TIMEZONES:
        return Rejected(BAD_TIMEZONE, "timezone is not an IANA time zone")
    if not is_locale(consent["locale"]):
        return Rejected(BAD_LOCALE, "locale is not a known BCP 47 locale (fr-FR, en-GB, ...)")
    large, low = consent["large_amount_minor"], consent["low_balance_minor"]
    if large is not None and not 0 < large <= MAX_ABS_AMOUNT_MINOR:
        return Rejected(BAD_THRESHOLD, "large_amount_minor must be positive and realistic")
    if low is not None and abs(low) > MAX_ABS_AMOUNT_MINOR:
        return Rejected(BAD_THRESHOLD, "low_balance_minor is beyond any real balance")
    quiet = consent["quiet_hours"]
    if quiet is not None and not (0 <= quiet["start"] < DAY_MS and 0 <= quiet["end"] < DAY_MS):
        return Rejected(BAD_QUIET_HOURS, "quiet_hours must be times of day")
    return None


def check_inbound(key: bytes | None, message: InboundMessage) -> Rejected | None:
    """Why a customer's message must not enter the conversation, or None. (What it says
    is never part of a reason: a dead letter's detail names fields, not text.)"""
    too_long = check_lengths(message)
    if too_long:
        return too_long
    if key is None or key.decode(errors="replace") != message["psid"]:
        return Rejected(KEY_MISMATCH, "psid differs from the record key")
    if not message["mid"] or not message["page_id"]:
        return Rejected(EMPTY_MESSAGE, "mid and page_id must be set")
    if not (message["text"] or "").strip() and not message["payload"]:
        return Rejected(EMPTY_MESSAGE, "a message needs a text or a payload")
    return None
