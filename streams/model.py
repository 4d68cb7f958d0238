"""The records of the contract as plain typed dicts.

fastavro reads and writes dicts, so these TypedDicts cost nothing on the hot
path: a decoded record *is* the model. Timestamps are epoch milliseconds (int),
local times are milliseconds since midnight, dates are days since the epoch:
the codec reads the wire's logical types as their underlying numbers.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# Subjects of the embedded registry, one per record type.
TRANSACTION = "passerelle.Transaction"
CONSENT = "passerelle.Consent"
NOTIFICATION = "passerelle.Notification"
DECISION = "passerelle.Decision"
ERASURE_RECEIPT = "passerelle.ErasureReceipt"
INBOUND_MESSAGE = "passerelle.InboundMessage"
WITHDRAWAL_REQUEST = "passerelle.WithdrawalRequest"
DELIVERY_REPORT = "passerelle.DeliveryReport"
BANK_OUTCOME = "passerelle.BankOutcome"
DISCLOSURE = "passerelle.Disclosure"

TransactionStatus = Literal["PENDING", "BOOKED", "REVERSED"]
Channel = Literal["CARD", "TRANSFER", "DIRECT_DEBIT", "ATM", "FEE", "OTHER"]
ConsentStatus = Literal[
    "RECEIVED", "VALID", "REJECTED", "REVOKED_BY_PSU", "EXPIRED", "TERMINATED_BY_TPP"
]
Permission = Literal["TRANSACTIONS", "BALANCES", "SUMMARIES", "ALERTS"]
NotificationKind = Literal[
    "TRANSACTION", "LARGE_TRANSACTION", "LOW_BALANCE", "DAILY_DIGEST", "CONSENT_ENDED", "RESPONSE"
]
MessagingType = Literal["RESPONSE", "UPDATE", "MESSAGE_TAG"]
MessageTag = Literal["ACCOUNT_UPDATE", "POST_PURCHASE_UPDATE"]
Outcome = Literal["FORWARDED", "WITHHELD"]
Display = Literal["FULL", "DISCREET"]
WithheldReason = Literal[
    "NO_CONSENT",
    "NOT_YET_VALID",
    "EXPIRED",
    "REVOKED",
    "OUT_OF_RANGE",
    "PERMISSION",
    "DUPLICATE",
    "STALE",
    "MUTED_BY_PSU",
    "UNREACHABLE",
]
ErasureReason = Literal["REVOKED_BY_PSU", "EXPIRED", "TERMINATED_BY_TPP", "TOMBSTONE", "REPLACED"]


class Transaction(TypedDict):
    transaction_id: str
    bank_id: str
    account_id: str
    status: TransactionStatus
    pending_transaction_id: str | None
    reversed_transaction_id: str | None
    amount_minor: int
    currency: str
    booked_at: int
    merchant_name: str | None
    mcc: str | None
    description: str | None
    balance_after_minor: int | None
    channel: Channel


class QuietHours(TypedDict):
    start: int
    end: int


class Consent(TypedDict):
    consent_id: str
    bank_id: str
    account_id: str
    psid: str
    page_id: str
    status: ConsentStatus
    permissions: list[Permission]
    valid_until: int
    transaction_from: int | None
    transaction_to: int | None
    locale: str
    timezone: str
    quiet_hours: QuietHours | None
    large_amount_minor: int | None
    low_balance_minor: int | None
    daily_digest: bool
    display: NotRequired[Display]
    """v2: FULL (what the permissions unlock) or DISCREET (kind, masked account, day);
    a v1 record reads as FULL."""
    updated_at: int


class CategoryTotal(TypedDict):
    category: str
    spent_minor: int
    received_minor: int


class DigestData(TypedDict):
    local_date: str
    spent_minor: int
    received_minor: int
    transaction_count: int
    by_category: list[CategoryTotal]


class NotificationData(TypedDict):
    account_masked: str | None
    amount_minor: int | None
    currency: str | None
    merchant_name: str | None
    category: str | None
    balance_minor: int | None
    digest: DigestData | None


class QuickReply(TypedDict):
    title: str
    payload: str


class DeliveryEnvelope(TypedDict):
    messaging_type: MessagingType
    tag: MessageTag | None
    silent: bool
    recurring: bool


class Notification(TypedDict):
    notification_id: str
    kind: NotificationKind
    psid: str
    page_id: str
    bank_id: str
    consent_id: str
    locale: str
    text: str
    data: NotificationData
    occurred_at: int
    created_at: int
    expires_at: int
    envelope: DeliveryEnvelope
    quick_replies: list[QuickReply] | None


class InboundMessage(TypedDict):
    """What a customer sent the Page, as the messaging worker received it."""

    mid: str
    psid: str
    page_id: str
    text: str | None
    payload: str | None
    sent_at: int


class WithdrawalRequest(TypedDict):
    """The customer asked, in the chat, to end a consent; the bank owns it and decides."""

    consent_id: str
    bank_id: str
    asked_at: int
    channel: str


DeliveryOutcome = Literal[
    "DELIVERED",
    "BLOCKED",
    "INVALID_RECIPIENT",
    "UNAVAILABLE",
    "OUTSIDE_WINDOW",
    "EXPIRED",
    "CONSENT_ENDED",
    "PAGE_STOPPED",
    "FAILED",
]


class DeliveryReport(TypedDict):
    """What became of one notification at the delivery worker (`messenger.feedback.v1`)."""

    notification_id: str
    consent_id: str
    bank_id: str
    page_id: str
    kind: str
    outcome: DeliveryOutcome
    message_id: str | None
    error_code: int | None
    error_subcode: int | None
    at: int


RecordOutcome = Literal["FORWARDED", "WITHHELD", "DEAD_LETTERED"]


class BankOutcome(TypedDict):
    """What became of one record a bank wrote, on that bank's own outcome feed."""

    transaction_id: str | None
    source_partition: int
    source_offset: int
    outcome: RecordOutcome
    reason: str | None
    decided_at: int


class Output(TypedDict):
    """A notification a transaction caused, as its Decision lists it (v4)."""

    notification_id: str
    kind: str
    psid_hash: str
    fields: list[str]


class Decision(TypedDict):
    bank_id: str
    account_hash: str
    transaction_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    outcome: Outcome
    reason: WithheldReason | None
    consent_id: str | None
    consent_updated_at: int | None
    decided_at: int
    outputs: NotRequired[list[Output]]
    """v4: the notifications it caused (empty or absent: none)."""


class Disclosure(TypedDict):
    """One notification written for an account, as the audit trail keeps it."""

    bank_id: str
    account_hash: str
    notification_id: str
    kind: str
    consent_id: str
    psid_hash: str
    fields: list[str]
    sent_at: int


class ErasedState(TypedDict):
    table: str
    keys: list[str]


CopyState = Literal["BOUNDED", "PURGED", "SHREDDED"]


class Remaining(TypedDict):
    topic: str
    policy: str
    until: int
    holds: NotRequired[str]
    """What of the account the topic may hold until then (v3; "" in older receipts)."""
    state: NotRequired[CopyState]
    """How the copy goes (v4; BOUNDED in older receipts)."""


class ErasureReceipt(TypedDict):
    bank_id: str
    account_hash: str
    consent_id: str
    consent_updated_at: int
    reason: ErasureReason
    erased_at: int
    erased: list[ErasedState]
    remains: list[Remaining]
