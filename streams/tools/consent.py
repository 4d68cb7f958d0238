"""`passerelle consent grant|revoke|erase|show`: the consent authority's side.

Consents are written to `consents.v1`, keyed `<bank_id>:<account_id>`; a
revocation is a newer version of the same consent with status REVOKED_BY_PSU.
`erase` writes the tombstone (a null value) that a consent authority writes once
a consent has ended: the worker erases what it holds for the account, and
compaction removes the last consent record (psid, page, locale, thresholds)
from the topic within `max.compaction.lag.ms`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, get_args

from streams import kafka, model
from streams.catalog import CONSENTS, bank_topic_name
from streams.codec import Codec
from streams.errors import PasserelleError
from streams.kafka import read_all
from streams.rules.ingest import check_consent
from streams.rules.masking import mask_account
from streams.settings import Settings

DAY_MS = 86_400_000


def key(bank_id: str, account_id: str) -> bytes:
    return f"{bank_id}:{account_id}".encode()


async def current(
    settings: Settings, codec: Codec, bank_id: str, account_id: str
) -> model.Consent | None:
    """The newest consent on consents.v1 for the account (None if none, or tombstoned)."""
    wanted = key(bank_id, account_id)
    return (await newest(settings, codec, (wanted,))).get(wanted)


async def newest(
    settings: Settings, codec: Codec, prefixes: tuple[bytes, ...]
) -> dict[bytes, model.Consent | None]:
    """The newest record on consents.v1 of every key that starts with one of `prefixes`
    (`b"<bank_id>:"` for a bank's accounts), decoded; None where it is a tombstone."""
    found: dict[bytes, model.Consent | None] = {}
    for record in await read_all(settings, CONSENTS):
        if record.key is not None and record.key.startswith(prefixes):
            value = None if record.value is None else codec.decode(model.CONSENT, record.value)
            found[record.key] = value  # type: ignore[assignment]  # decoded Consent
    return found


async def write(settings: Settings, codec: Codec, consent: model.Consent) -> None:
    frame = codec.encode(model.CONSENT, consent)
    await _send(settings, key(consent["bank_id"], consent["account_id"]), frame)


async def erase(settings: Settings, bank_id: str, account_id: str) -> None:
    """The account's tombstone on consents.v1."""
    await _send(settings, key(bank_id, account_id), None)


async def _send(settings: Settings, record_key: bytes, value: bytes | None) -> None:
    await kafka.require_topics(settings, [CONSENTS], "run `passerelle topics create`")
    producer = kafka.producer(settings)
    try:
        await producer.start()
        await producer.send_and_wait(CONSENTS, value, record_key)
    finally:
        await producer.stop()


def grant(
    bank_id: str,
    account_id: str,
    psid: str,
    page_id: str,
    permissions: list[str],
    locale: str,
    timezone: str,
    days: int,
    digest: bool,
    large: int | None,
    low: int | None,
    display: model.Display = "FULL",
) -> model.Consent:
    """A VALID consent for `days` days, checked as ingest will check it: a consent the
    worker would dead-letter (and so withhold the account for) is refused here, in one
    line naming the field."""
    try:
        bank_topic_name(bank_id)
    except ValueError as exc:
        raise PasserelleError(str(exc)) from None
    unknown = set(permissions) - set(get_args(model.Permission))
    if unknown:
        raise PasserelleError(f"unknown permission(s): {', '.join(sorted(unknown))}")
    if days < 1:
        raise PasserelleError(f"--days must be at least 1 (a consent valid for {days} days)")
    now = int(time.time() * 1000)
    consent: dict[str, Any] = {
        "consent_id": f"cns-{uuid.uuid4().hex[:12]}",
        "bank_id": bank_id,
        "account_id": account_id,
        "psid": psid,
        "page_id": page_id,
        "status": "VALID",
        "permissions": permissions,
        "valid_until": now + days * DAY_MS,
        "transaction_from": None,
        "transaction_to": None,
        "locale": locale,
        "timezone": timezone,
        "quiet_hours": None,
        "large_amount_minor": large,
        "low_balance_minor": low,
        "daily_digest": digest,
        "display": display,
        "updated_at": now,
    }
    refused = check_consent(bank_id, account_id, consent)  # type: ignore[arg-type]  # built above
    if refused is not None:
        raise PasserelleError(f"{refused.detail} ({refused.reason})")
    return consent  # type: ignore[return-value]  # built field by field above


def revoked(consent: model.Consent) -> model.Consent:
    """The next version of `consent`, revoked by the customer."""
    if consent["status"] != "VALID":
        raise PasserelleError(f"consent {consent['consent_id']} is {consent['status']}, not VALID")
    now = max(int(time.time() * 1000), consent["updated_at"] + 1)
    return {**consent, "status": "REVOKED_BY_PSU", "updated_at": now}


def shown(consent: model.Consent | None) -> str:
    """The consent as JSON, the psid and the account masked as a customer sees them."""
    if consent is None:
        return "no consent"
    masked = {
        **consent,
        "psid": "…" + consent["psid"][-4:],
        "account_id": mask_account(consent["account_id"]),
    }
    return json.dumps(masked, ensure_ascii=False)
