"""Answers in the chat: the RESPONSE notifications, from what the gate released.

Pure functions from a question (`Asked`), the gate's answer (a `Release`, with
`asks` the permission the question needs) and the account's summary to one
`Notification` of kind RESPONSE:

- its `notification_id` derives from the customer's message (`mid`) and the
  account's keyed hash: a replay of the same question answers with the same
  id; two accounts of one psid get one answer each;
- its envelope is Messenger's RESPONSE type (no tag: the customer's message
  opened the 24-hour window), expiring when that window closes;
- `data` carries only what the gate unlocked, and the text is rendered from
  that alone: a question the consent does not cover gets a refusal that says
  what is not shared and where to grant it, never data; a discreet account
  gets no amount, merchant or balance, in text or data.

French for a `fr*` locale, English otherwise (`streams.rules.notify`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from streams.model import (
    Consent,
    DigestData,
    Notification,
    NotificationData,
    Permission,
    QuickReply,
    WithheldReason,
)
from streams.rules.accounts import Recent, State, month_summary
from streams.rules.categories import label
from streams.rules.intents import Intent
from streams.rules.masking import mask_account
from streams.rules.money import format_money
from streams.rules.notify import TTL_MS, french, masked_only, notification_id
from streams.rules.outputs import Release, redact

RESPONSE_ENVELOPE = {"messaging_type": "RESPONSE", "tag": None, "silent": False, "recurring": False}


@dataclass(frozen=True)
class Asked:
    """One question on its way to one account: who asked, where, when, what."""

    mid: str
    psid: str
    page_id: str
    intent: Intent
    sent_at: int
    locale: str
    """The language to answer in when no consent says (the psid's linked consents')."""


@dataclass(frozen=True)
class To:
    """Whom an answer is about: the account's bank, masked number, hash, and consent."""

    bank_id: str
    masked: str
    account_hash: str
    consent_id: str
    locale: str


def to_account(
    bank_id: str, account_id: str, account_hash: str, consent: Consent | None, locale: str
) -> To:
    """The addressee of an answer about one account (its consent's locale, if held)."""
    return To(
        bank_id,
        mask_account(account_id),
        account_hash,
        consent["consent_id"] if consent else "",
        consent["locale"] if consent else locale,
    )


def response(
    asked: Asked,
    to: To,
    text: str,
    now_ms: int,
    data: NotificationData | None = None,
    quick_replies: list[QuickReply] | None = None,
) -> Notification:
    """A RESPONSE to `asked` about `to`'s account (an empty hash: about no account)."""
    return {
        "notification_id": notification_id("RESPONSE", asked.mid, to.account_hash),
        "kind": "RESPONSE",
        "psid": asked.psid,
        "page_id": asked.page_id,
        "bank_id": to.bank_id,
        "consent_id": to.consent_id,
        "locale": to.locale,
        "text": text,
        "data": data or masked_only(to.masked),
        "occurred_at": asked.sent_at,
        "created_at": now_ms,
        "expires_at": asked.sent_at + TTL_MS["RESPONSE"],
        "envelope": RESPONSE_ENVELOPE,  # type: ignore[typeddict-item]  # the literal is a DeliveryEnvelope
        "quick_replies": quick_replies,
    }


def answer(asked: Asked, to: To, granted: Release, summary: State, now_ms: int) -> Notification:
    """The answer to a question (BALANCE, RECENT, MONTH) the gate `granted`."""
    consent = granted.consent
    if not granted.allowed or consent is None:
        raise ValueError(f"the gate withheld this answer ({granted.withheld})")
    fr, locale, m = french(to.locale), to.locale, to.masked
    facts = masked_only(m)
    currency = summary["currency"] or "EUR"
    recent = summary.get("recent", [])
    if asked.intent == "BALANCE":
        facts["balance_minor"], facts["currency"] = summary["balance"], currency
    elif asked.intent == "RECENT" and recent:
        latest = recent[0]
        facts["amount_minor"], facts["currency"] = latest["amount"], currency
        facts["merchant_name"], facts["category"] = latest["merchant"], latest["category"]
    elif asked.intent == "MONTH":
        facts["digest"], facts["currency"] = month_summary(summary), currency
    data = redact(facts, granted.fields)
    if granted.fields <= {"account_masked"}:  # discreet: nothing but the masked account
        text = (
            f"Mode discret\u00a0: pas de montants pour le compte {m}. "
            "Envoyez «\u00a0discret off\u00a0» pour les voir."
            if fr
            else f"Discreet mode: no amounts for account {m}. Send “discreet off” to see them."
        )
    elif asked.intent == "BALANCE":
        text = _balance_text(data, fr, locale, m)
    elif asked.intent == "RECENT":
        text = _recent_text(recent, currency, consent["timezone"], fr, locale, m)
    else:
        text = _month_text(data["digest"], currency, fr, locale, m)
    return response(asked, to, text, now_ms, data)


def _balance_text(data: NotificationData, fr: bool, locale: str, m: str) -> str:
    balance, currency = data["balance_minor"], data["currency"]
    if balance is None or currency is None:
        return (
            f"Le solde du compte {m} n’est pas encore connu."
            if fr
            else f"The balance of account {m} is not known yet."
        )
    money = format_money(balance, currency, locale)
    return f"Solde du compte {m}\u00a0: {money}" if fr else f"Balance of account {m}: {money}"


def _recent_text(
    recent: list[Recent], currency: str, timezone: str, fr: bool, locale: str, m: str
) -> str:
    if not recent:
        return (
            f"Aucune opération récente sur le compte {m}."
            if fr
            else (f"No recent transactions on account {m}.")
        )
    lines = [
        f"Dernières opérations sur le compte {m}\u00a0:"
        if fr
        else f"Latest transactions on account {m}:"
    ]
    for r in recent:
        day = dt.datetime.fromtimestamp(r["booked_at"] / 1000, ZoneInfo(timezone))
        what = r["merchant"] or label(r["category"], fr)
        lines.append(f"{day:%d/%m} {what} {format_money(r['amount'], currency, locale)}")
    return "\n".join(lines)


def _month_text(digest: DigestData | None, currency: str, fr: bool, locale: str, m: str) -> str:
    if digest is None or digest["transaction_count"] == 0:
        return (
            f"Aucune opération ce mois-ci sur le compte {m}."
            if fr
            else (f"No transactions this month on account {m}.")
        )
    month = f"{digest['local_date'][5:7]}/{digest['local_date'][:4]}"
    n = digest["transaction_count"]
    spent = format_money(digest["spent_minor"], currency, locale)
    received = format_money(digest["received_minor"], currency, locale)
    if fr:
        return (
            f"Ce mois-ci ({month}) sur le compte {m}\u00a0: {n} opération{'s' if n > 1 else ''}, "
            f"{spent} dépensés, {received} reçus"
        )
    return (
        f"This month ({month}) on account {m}: {n} transaction{'s' if n != 1 else ''}, "
        f"{spent} spent, {received} received"
    )


_SHARED = {
    "BALANCES": ("son solde", "its balance"),
    "TRANSACTIONS": ("ses opérations", "its transactions"),
    "SUMMARIES": ("ses résumés", "its summaries"),
    "ALERTS": ("ses alertes", "its alerts"),
}


def refusal(
    asked: Asked, to: To, needs: Permission | None, why: WithheldReason | None, now_ms: int
) -> Notification:
    """What is not shared, and where to share it: never data."""
    fr, m = french(to.locale), to.masked
    if why == "PERMISSION" and needs is not None:
        fr_what, en_what = _SHARED[needs]
        text = (
            f"Le compte {m} ne partage pas {fr_what} avec cette conversation. Pour le "
            "partager, modifiez votre consentement dans l’application de votre banque."
            if fr
            else f"Account {m} does not share {en_what} with this chat. To share it, "
            "change your consent in your bank’s app."
        )
    else:
        text = (
            f"Aucun partage actif pour le compte {m}\u00a0: rien ne peut être affiché ici. "
            "Pour suivre ce compte, activez le service dans l’application de votre banque."
            if fr
            else f"Account {m} is not shared with this chat: nothing can be shown here. "
            "To follow it, turn the service on in your bank’s app."
        )
    return response(asked, to, text, now_ms)
