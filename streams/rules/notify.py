"""Notifications: what the customer reads, what the data may carry, how it may be delivered.

Pure functions from a consent and a fact (a transaction, a day's summary, an
end) to a `Notification`:

- `notification_id` is a hash of the kind and its source, never of an
  account number: TRANSACTION and the alerts come from the bank's
  transaction id, a digest from the consent and the local date, CONSENT_ENDED
  from the consent id and version. Replays give the same id, text and data.
- `data` carries only what the gate (`streams.rules.outputs.release`) unlocked,
  and the text is rendered from that redacted data alone: an ALERTS-only
  consent's large-transaction alert names the masked account, never the
  amount or the merchant.
- The envelope follows Messenger policy (`../shared/notes/domain.md`): a
  purchase is a POST_PURCHASE_UPDATE, another change to the account an
  ACCOUNT_UPDATE (non-recurring), the recurring digest has no tag (it needs
  the 24 h window or a utility template), quiet hours make it silent, never
  dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from zoneinfo import ZoneInfo

from streams.model import (
    Consent,
    DeliveryEnvelope,
    DigestData,
    MessageTag,
    Notification,
    NotificationData,
    NotificationKind,
    Transaction,
)
from streams.rules.categories import category
from streams.rules.masking import mask_account
from streams.rules.money import format_money
from streams.rules.outputs import Release, redact
from streams.rules.safe_text import shown_or_none

HOUR_MS = 3_600_000
# How long a message stays worth delivering.
TTL_MS: dict[NotificationKind, int] = {
    "TRANSACTION": 24 * HOUR_MS,
    "LARGE_TRANSACTION": 24 * HOUR_MS,
    "LOW_BALANCE": 24 * HOUR_MS,
    "DAILY_DIGEST": 24 * HOUR_MS,
    "CONSENT_ENDED": 7 * 24 * HOUR_MS,
    "RESPONSE": 24 * HOUR_MS,  # Messenger's window, opened by the customer's message
}


def notification_id(kind: NotificationKind, *source: str) -> str:
    """The same kind and source always give the same id."""
    digest = hashlib.sha256("\x1f".join((kind, *source)).encode()).hexdigest()
    return f"ntf-{digest[:32]}"


def in_quiet_hours(consent: Consent, now_ms: int) -> bool:
    """Whether `now` falls inside the consent's quiet hours, in its own time zone."""
    quiet = consent["quiet_hours"]
    if quiet is None:
        return False
    local = dt.datetime.fromtimestamp(now_ms / 1000, ZoneInfo(consent["timezone"]))
    ms = ((local.hour * 60 + local.minute) * 60 + local.second) * 1000
    start, end = quiet["start"], quiet["end"]
    return start <= ms < end if start <= end else (ms >= start or ms < end)


def envelope(
    kind: NotificationKind, consent: Consent, now_ms: int, debit: bool = False
) -> DeliveryEnvelope:
    silent = in_quiet_hours(consent, now_ms)
    if kind == "DAILY_DIGEST":
        return {"messaging_type": "UPDATE", "tag": None, "silent": silent, "recurring": True}
    tag: MessageTag = (
        "POST_PURCHASE_UPDATE" if kind == "TRANSACTION" and debit else "ACCOUNT_UPDATE"
    )
    return {"messaging_type": "MESSAGE_TAG", "tag": tag, "silent": silent, "recurring": False}


def french(locale: str) -> bool:
    """French for a `fr*` locale; English otherwise."""
    return locale.lower().startswith("fr")


def _base(
    kind: NotificationKind,
    ident: str,
    consent: Consent,
    text: str,
    data: NotificationData,
    occurred_at: int,
    now_ms: int,
    env: DeliveryEnvelope,
) -> Notification:
    return {
        "notification_id": ident,
        "kind": kind,
        "psid": consent["psid"],
        "page_id": consent["page_id"],
        "bank_id": consent["bank_id"],
        "consent_id": consent["consent_id"],
        "locale": consent["locale"],
        "text": text,
        "data": data,
        "occurred_at": occurred_at,
        "created_at": now_ms,
        "expires_at": now_ms + TTL_MS[kind],
        "envelope": env,
        "quick_replies": None,
    }


def masked_only(masked: str | None) -> NotificationData:
    """Data naming the account (masked) and nothing else; every other field null."""
    return {
        "account_masked": masked,
        "amount_minor": None,
        "currency": None,
        "merchant_name": None,
        "category": None,
        "balance_minor": None,
        "digest": None,
    }


def _empty_data(consent: Consent) -> NotificationData:
    return masked_only(mask_account(consent["account_id"]))


def for_transaction(
    kind: NotificationKind, granted: Release, tx: Transaction, now_ms: int
) -> Notification:
    """TRANSACTION, LARGE_TRANSACTION or LOW_BALANCE for one transaction, carrying only
    what the gate `granted` unlocks, in data and in text."""
    consent = _consent(granted)
    facts = _empty_data(consent)
    facts["amount_minor"] = tx["amount_minor"]
    facts["currency"] = tx["currency"]
    facts["merchant_name"] = shown_or_none(tx["merchant_name"])  # a bank's text, made safe
    facts["category"] = category(tx["mcc"], tx["channel"])
    facts["balance_minor"] = tx["balance_after_minor"]
    data = redact(facts, granted.fields)
    text = render_transaction(kind, consent, data)
    ident = notification_id(kind, tx["bank_id"], tx["transaction_id"])
    env = envelope(kind, consent, now_ms, debit=tx["amount_minor"] < 0)
    return _base(kind, ident, consent, text, data, tx["booked_at"], now_ms, env)


def _consent(granted: Release) -> Consent:
    if not granted.allowed or granted.consent is None:
        raise ValueError(f"the gate withheld this output ({granted.withheld})")
    return granted.consent


def render_transaction(kind: NotificationKind, consent: Consent, data: NotificationData) -> str:
    """The text of an event kind, from its (redacted) data alone."""
    locale = consent["locale"]
    fr = french(locale)
    amount, currency = data["amount_minor"], data["currency"]
    where = data["merchant_name"]
    masked = data["account_masked"]
    if kind == "LOW_BALANCE":
        threshold = consent["low_balance_minor"] or 0
        limit = format_money(threshold, currency, locale) if currency else None
        line = (
            ("Votre solde est passé sous " + (limit or "votre seuil"))
            if fr
            else ("Your balance fell below " + (limit or "your threshold"))
        )
    elif (amount is None or currency is None) and kind == "LARGE_TRANSACTION":
        return (  # an alert without TRANSACTIONS, or discreet: no details
            f"Opération importante sur le compte {masked}"
            if fr
            else f"Large transaction on account {masked}"
        )
    elif amount is None or currency is None:  # discreet: that it happened, nothing more
        return (
            f"Nouvelle opération sur le compte {masked}"
            if fr
            else (f"New transaction on account {masked}")
        )
    elif amount < 0:
        money = format_money(abs(amount), currency, locale)
        line = (
            f"Paiement de {money}" + (f" chez {where}" if where else "")
            if fr
            else f"Payment of {money}" + (f" at {where}" if where else "")
        )
    else:
        money = format_money(abs(amount), currency, locale)
        line = (
            f"Crédit de {money}" + (f" {_de(where)}" if where else "")
            if fr
            else f"Credit of {money}" + (f" from {where}" if where else "")
        )
    if kind == "LARGE_TRANSACTION":
        line = ("Opération importante\u00a0: " if fr else "Large transaction: ") + line
    balance = data["balance_minor"]
    if balance is not None and currency is not None:
        shown = format_money(balance, currency, locale)
        line += f" — solde\u00a0: {shown}" if fr else f" — balance: {shown}"
    return line


def _de(name: str) -> str:
    """French "de" before a name: elided before a vowel ("d’Employeur SA", "de Fnac")."""
    return f"d’{name}" if name[:1].lower() in "aeiouyàâéèêëîïôöûü" else f"de {name}"


def for_digest(
    granted: Release, digest: DigestData, currency: str, occurred_at: int, now_ms: int
) -> Notification:
    """DAILY_DIGEST of one account for one local day."""
    consent = _consent(granted)
    facts = _empty_data(consent)
    facts["currency"] = currency
    facts["digest"] = digest
    data = redact(facts, granted.fields)
    locale = consent["locale"]
    day = dt.date.fromisoformat(digest["local_date"])
    ident = notification_id("DAILY_DIGEST", consent["consent_id"], digest["local_date"])
    env = envelope("DAILY_DIGEST", consent, now_ms)
    if data["digest"] is None:  # discreet: the day had activity, nothing more
        masked = data["account_masked"]
        text = (
            f"Activité du {day:%d/%m} sur le compte {masked}"
            if french(locale)
            else f"Activity on account {masked} on {day.day} {day:%b}"
        )
        return _base("DAILY_DIGEST", ident, consent, text, data, occurred_at, now_ms, env)
    digest = data["digest"]
    currency = data["currency"] or currency
    spent = format_money(digest["spent_minor"], currency, locale)
    received = format_money(digest["received_minor"], currency, locale)
    n = digest["transaction_count"]
    if french(locale):
        text = (
            f"Votre journée du {day:%d/%m}\u00a0: {n} opération{'s' if n > 1 else ''}, "
            f"{spent} dépensés, {received} reçus"
        )
    else:
        text = (
            f"Your day ({day.day} {day:%b}): {n} transaction{'s' if n != 1 else ''}, "
            f"{spent} spent, {received} received"
        )
    return _base("DAILY_DIGEST", ident, consent, text, data, occurred_at, now_ms, env)


def for_consent_ended(granted: Release, version: int, now_ms: int) -> Notification:
    """CONSENT_ENDED: the customer is told, and a worker drops what it has not delivered."""
    consent = _consent(granted)
    masked = mask_account(consent["account_id"])
    text = (
        f"Vous ne recevrez plus de notifications pour le compte {masked}\u00a0: "
        "votre consentement a pris fin."
        if french(consent["locale"])
        else f"You will no longer receive notifications for account {masked}: "
        "your consent has ended."
    )
    ident = notification_id("CONSENT_ENDED", consent["consent_id"], str(version))
    env = envelope("CONSENT_ENDED", consent, now_ms)
    data = redact(_empty_data(consent), granted.fields)
    return _base("CONSENT_ENDED", ident, consent, text, data, now_ms, now_ms, env)
