"""One realistic record of each type, shared by unit and integration tests."""

from __future__ import annotations

from typing import Any

from streams import model

BOOKED_AT = 1_795_910_400_000  # 2026-11-29T00:00:00Z

TRANSACTION: model.Transaction = {
    "transaction_id": "tx-000001",
    "bank_id": "banque-alpine",
    "account_id": "FR7630006000011234567890189",
    "status": "BOOKED",
    "pending_transaction_id": "tx-000000",
    "reversed_transaction_id": None,
    "amount_minor": -123456,
    "currency": "EUR",
    "booked_at": BOOKED_AT,
    "merchant_name": "Boulangerie Pâtissière",
    "mcc": "5462",
    "description": "CB 28/11",
    "balance_after_minor": 98765,
    "channel": "CARD",
}

CONSENT: model.Consent = {
    "consent_id": "cns-42",
    "bank_id": "banque-alpine",
    "account_id": "FR7630006000011234567890189",
    "psid": "24871234567890123",
    "page_id": "105123456789012",
    "status": "VALID",
    "permissions": ["TRANSACTIONS", "BALANCES", "ALERTS"],
    "valid_until": BOOKED_AT + 90 * 86_400_000,
    "transaction_from": None,
    "transaction_to": None,
    "locale": "fr-FR",
    "timezone": "Europe/Paris",
    "quiet_hours": {"start": 22 * 3_600_000, "end": 7 * 3_600_000},
    "large_amount_minor": 50_000,
    "low_balance_minor": 10_000,
    "daily_digest": True,
    "updated_at": BOOKED_AT - 3_600_000,
}

NOTIFICATION: model.Notification = {
    "notification_id": "ntf-5b1d",
    "kind": "TRANSACTION",
    "psid": "24871234567890123",
    "page_id": "105123456789012",
    "bank_id": "banque-alpine",
    "consent_id": "cns-42",
    "locale": "fr-FR",
    "text": "Paiement de 1 234,56 € chez Boulangerie Pâtissière",
    "data": {
        "account_masked": "•••• 0189",
        "amount_minor": -123456,
        "currency": "EUR",
        "merchant_name": "Boulangerie Pâtissière",
        "category": "groceries",
        "balance_minor": 98765,
        "digest": None,
    },
    "occurred_at": BOOKED_AT,
    "created_at": BOOKED_AT + 250,
    "expires_at": BOOKED_AT + 86_400_000,
    "envelope": {
        "messaging_type": "MESSAGE_TAG",
        "tag": "POST_PURCHASE_UPDATE",
        "silent": False,
        "recurring": False,
    },
    "quick_replies": None,
}

RESPONSE: model.Notification = {
    **NOTIFICATION,
    "notification_id": "ntf-r1",
    "kind": "RESPONSE",
    "text": "Vous pouvez demander : solde",
    "data": {**NOTIFICATION["data"], "amount_minor": None, "merchant_name": None},
    "envelope": {"messaging_type": "RESPONSE", "tag": None, "silent": False, "recurring": False},
    "quick_replies": [{"title": "Solde", "payload": "PASSERELLE_BALANCE"}],
}

DIGEST: model.Notification = {
    **NOTIFICATION,
    "notification_id": "ntf-d1",
    "kind": "DAILY_DIGEST",
    "text": "Your day: €12.50 spent",
    "locale": "en-GB",
    "data": {
        "account_masked": "•••• 0189",
        "amount_minor": None,
        "currency": "EUR",
        "merchant_name": None,
        "category": None,
        "balance_minor": None,
        "digest": {
            "local_date": "2026-11-28",
            "spent_minor": 1250,
            "received_minor": 0,
            "transaction_count": 2,
            "by_category": [{"category": "groceries", "spent_minor": 1250, "received_minor": 0}],
        },
    },
    "envelope": {"messaging_type": "UPDATE", "tag": None, "silent": True, "recurring": True},
}

DECISION: model.Decision = {
    "bank_id": "banque-alpine",
    "account_hash": "k0:1f2e3d4c5b6a7988",
    "transaction_id": "tx-000001",
    "source_topic": "bank.banque-alpine.transactions.v1",
    "source_partition": 3,
    "source_offset": 1_234_567,
    "outcome": "WITHHELD",
    "reason": "REVOKED",
    "consent_id": "cns-42",
    "consent_updated_at": BOOKED_AT - 3_600_000,
    "decided_at": BOOKED_AT + 120,
}

BANK_OUTCOME: model.BankOutcome = {
    "transaction_id": "tx-000001",
    "source_partition": 3,
    "source_offset": 1_234_567,
    "outcome": "WITHHELD",
    "reason": "REVOKED",
    "decided_at": BOOKED_AT + 120,
}

DISCLOSURE: model.Disclosure = {
    "bank_id": "banque-alpine",
    "account_hash": "k0:1f2e3d4c5b6a7988",
    "notification_id": "ntf-1",
    "kind": "TRANSACTION",
    "consent_id": "cns-42",
    "psid_hash": "k0:0a1b2c3d4e5f6071",
    "fields": ["account_masked", "amount_minor", "currency"],
    "sent_at": BOOKED_AT + 120,
}

ERASURE_RECEIPT: model.ErasureReceipt = {
    "bank_id": "banque-alpine",
    "account_hash": "k0:1f2e3d4c5b6a7988",
    "consent_id": "cns-42",
    "consent_updated_at": BOOKED_AT,
    "reason": "REVOKED_BY_PSU",
    "erased_at": BOOKED_AT + 500,
    "erased": [{"table": "accounts", "keys": ["k0:1f2e3d4c5b6a7988"]}],
    "remains": [
        {
            "topic": "consents.v1",
            "policy": "max.compaction.lag.ms=3600000",
            "until": BOOKED_AT + 7_200_500,
        }
    ],
}

# (subject, record) for every record type the codec must carry.
ALL: list[tuple[str, Any]] = [
    (model.TRANSACTION, TRANSACTION),
    (model.CONSENT, CONSENT),
    (model.NOTIFICATION, NOTIFICATION),
    (model.NOTIFICATION, DIGEST),
    (model.DECISION, DECISION),
    (model.ERASURE_RECEIPT, ERASURE_RECEIPT),
    (model.BANK_OUTCOME, BANK_OUTCOME),
]


def as_newest(subject: str, record: Any) -> dict[str, Any]:
    """The record as the subject's newest version reads it: a receipt's remaining copies
    gain v3's `holds` ("" by default), a consent v2's `display` (FULL), a decision v4's
    `outputs` (none); the value_date of Transaction v2 is checked apart."""
    if subject == model.CONSENT:
        return {"display": "FULL", **record}
    if subject == model.DECISION:
        return {"outputs": [], **record}
    if subject != model.ERASURE_RECEIPT:
        return dict(record)
    return {
        **record,
        "remains": [{"holds": "", "state": "BOUNDED", **r} for r in record["remains"]],
    }
