"""Ingest: bank topics, consents and inbound messages in, the internal streams (or the DLQ) out.

The record's Avro frame travels on unchanged; headers say what it is
(`kind`: transaction, consent) and where it came from, for the audit trail.
A record that cannot be decoded, or that speaks for another bank or account,
goes to the DLQ with a reason code and its source coordinates. A consent that
is dead-lettered also leaves a `consent-unreadable` marker on its account's
stream (when its key names one): an unreadable consent withholds, it never
lets the previous one go on (fail closed). A customer's message is checked
and read for its intent once, here: the psid stream gets what it asks (its
id, page, intent and time), keyed by its psid, never its text, and no log
line carries it. A delivery report (`messenger.feedback.v1`) is counted per
bank and outcome; one that says the recipient cannot be reached (BLOCKED,
INVALID_RECIPIENT) goes to its psid's stream as `unreachable`, with the
consent it was sent under.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from streams import catalog, model
from streams.agents.dlq import dead_letter
from streams.codec import Codec
from streams.core.spec import Emit, StageSpec
from streams.core.store import PartitionStore
from streams.errors import CodecError
from streams.logs import event
from streams.metrics import Metrics
from streams.rules import ingest as rules
from streams.rules.delivery import UNREACHABLE_OUTCOMES
from streams.rules.ingest import Rejected
from streams.rules.intents import parse
from streams.stream import (
    KIND_CONSENT,
    KIND_DEAD,
    KIND_INBOUND,
    KIND_TRANSACTION,
    KIND_UNREACHABLE,
    KIND_UNREADABLE_CONSENT,
    Dead,
    Inbound,
    Source,
    encode_headers,
    encode_inbound,
)

log = logging.getLogger(__name__)


def spec(
    codec: Codec,
    account_stream: str,
    metrics: Metrics,
    consents_topic: str = catalog.CONSENTS,
    psid_stream: str | None = None,
) -> StageSpec:
    """Metrics count records as handled (a batch retried after an abort counts again).
    Without a `psid_stream`, inbound messages are not read (the bench's ingest)."""

    def handle(record: ConsumerRecord[bytes, bytes], _: PartitionStore) -> Sequence[Emit]:
        bank = catalog.bank_of_topic(record.topic)
        if record.topic == catalog.INBOUND and psid_stream is not None:
            return _inbound(codec, record, psid_stream, metrics)
        if record.topic == catalog.FEEDBACK and psid_stream is not None:
            return _feedback(codec, record, psid_stream, metrics)
        if record.topic == consents_topic:
            routed = _consent(codec, record)
            kind = KIND_CONSENT
        else:
            routed = _transaction(codec, record)
            kind = KIND_TRANSACTION
            metrics.child(metrics.events_in, bank or "unknown").inc()
        if isinstance(routed, Rejected):
            metrics.child(metrics.dlq, bank or "consents", routed.reason).inc()
            log.warning(
                "dead-lettered %s-%d@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                routed.reason,
                extra=event(
                    "dlq",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    bank=bank,
                    reason=routed.reason,
                ),
            )
            return _dead(record, routed, kind, account_stream)
        return [Emit(account_stream, routed, record.value, headers=_source(record, kind))]

    chat = [catalog.INBOUND, catalog.FEEDBACK] if psid_stream is not None else []
    inputs = [consents_topic, *chat]
    exact = "|".join(f"^{t.replace('.', '[.]')}" for t in inputs)
    pattern = f"({catalog.BANK_TOPIC_PATTERN[:-1]}|{exact})$"

    def on_error(
        record: ConsumerRecord[bytes, bytes], exc: Exception, _: PartitionStore
    ) -> Sequence[Emit]:
        bank = catalog.bank_of_topic(record.topic)
        metrics.child(metrics.dlq, bank or "consents", rules.PROCESSING_ERROR).inc()
        failed = Rejected(rules.PROCESSING_ERROR, f"{type(exc).__name__} in ingest")
        kind = KIND_CONSENT if record.topic == consents_topic else KIND_TRANSACTION
        return _dead(record, failed, kind, account_stream)

    return StageSpec(
        "ingest", handle, pattern=pattern, catch_up=(consents_topic,), on_error=on_error
    )


def _transaction(codec: Codec, record: ConsumerRecord[bytes, bytes]) -> bytes | Rejected:
    bank = catalog.bank_of_topic(record.topic)
    if bank is None:
        return Rejected("UNKNOWN_TOPIC", "not an ingest topic")
    unfit = rules.check_frame(record.value)
    if unfit:
        return unfit
    try:
        tx: model.Transaction = codec.decode(model.TRANSACTION, record.value)  # type: ignore[assignment]  # the codec returns the schema's dict
    except CodecError as exc:
        return Rejected(exc.reason, str(exc))
    rejected = rules.check_transaction(bank, record.key, tx, record.timestamp)
    return rejected or rules.account_key(bank, tx["account_id"])


def _consent(codec: Codec, record: ConsumerRecord[bytes, bytes]) -> bytes | Rejected:
    split = rules.split_consent_key(record.key)
    if isinstance(split, Rejected):
        return split
    if record.value is None:  # a tombstone: erase, whatever is held
        return rules.account_key(*split)
    unfit = rules.check_frame(record.value)
    if unfit:
        return unfit
    try:
        consent: model.Consent = codec.decode(model.CONSENT, record.value)  # type: ignore[assignment]  # the codec returns the schema's dict
    except CodecError as exc:
        return Rejected(exc.reason, str(exc))
    return rules.check_consent(*split, consent) or rules.account_key(*split)


def _inbound(
    codec: Codec, record: ConsumerRecord[bytes, bytes], psid_stream: str, metrics: Metrics
) -> list[Emit]:
    """A customer's message, checked, to its psid's stream (or the DLQ)."""
    routed = rules.check_frame(record.value)
    page = "unknown"
    if routed is None:
        try:
            message: model.InboundMessage = codec.decode(model.INBOUND_MESSAGE, record.value)  # type: ignore[assignment]  # the codec returns the schema's dict
        except CodecError as exc:
            routed = Rejected(exc.reason, str(exc))
        else:
            routed = rules.check_inbound(record.key, message)
            if 0 < len(message["page_id"]) <= rules.MAX_TEXT["page_id"]:  # a bounded label
                page = message["page_id"]
    metrics.child(metrics.inbound, page, "in").inc()
    if routed is not None:
        metrics.child(metrics.inbound, page, "dlq").inc()
        metrics.child(metrics.dlq, "inbound", routed.reason).inc()
        return [dead_letter(record, routed.reason, routed.detail, kept=False)]
    intent = parse(message["text"], message["payload"])  # read once; the text goes no further
    asks = Inbound(message["mid"], page, intent, message["sent_at"])
    headers = _source(record, KIND_INBOUND)
    return [Emit(psid_stream, record.key, encode_inbound(asks), headers=headers)]


def _feedback(
    codec: Codec, record: ConsumerRecord[bytes, bytes], psid_stream: str, metrics: Metrics
) -> list[Emit]:
    """A delivery report, counted; an unreachable recipient, to its psid's stream."""
    rejected = rules.check_frame(record.value)
    if rejected is None and not record.key:
        rejected = Rejected(rules.KEY_MISMATCH, "a delivery report is keyed by psid")
    if rejected is None:
        try:
            report: model.DeliveryReport = codec.decode(model.DELIVERY_REPORT, record.value)  # type: ignore[assignment]  # the codec returns the schema's dict
        except CodecError as exc:
            rejected = Rejected(exc.reason, str(exc))
    if rejected is not None:
        metrics.child(metrics.dlq, "feedback", rejected.reason).inc()
        return [dead_letter(record, rejected.reason, rejected.detail, kept=False)]
    bank = report["bank_id"] if catalog.is_bank_id(report["bank_id"]) else "unknown"
    metrics.child(metrics.feedback, bank, report["outcome"]).inc()
    if report["outcome"] not in UNREACHABLE_OUTCOMES:
        return []
    headers = _source(record, KIND_UNREACHABLE)
    value = report["consent_id"].encode()
    return [Emit(psid_stream, record.key, value, headers=headers)]


def _dead(
    record: ConsumerRecord[bytes, bytes], rejected: Rejected, kind: bytes, account_stream: str
) -> list[Emit]:
    """A bank's or the authority's record that will not enter the pipeline. When its key
    names an account, it goes on that account's stream (`KIND_DEAD`; a consent as
    `KIND_UNREADABLE_CONSENT`, so the account withholds until a newer readable one:
    fail closed), and the accounts stage writes its dead letter sealed with the
    account's key. Otherwise nothing could erase it by account, and a value too large
    to be a frame of ours is not worth carrying: the DLQ gets why and where, and its
    size, never its bytes (the bank's own topic still holds them); a consent's account
    still gets its marker."""
    if kind == KIND_CONSENT:
        account, marked = rules.named_consent_account(record.key), KIND_UNREADABLE_CONSENT
    else:
        account = rules.named_account(catalog.bank_of_topic(record.topic), record.key)
        marked = KIND_DEAD
    if account is None or rejected.reason == rules.TOO_LARGE:
        letter = dead_letter(record, rejected.reason, rejected.detail, kept=False)
        if account is None or kind != KIND_CONSENT:
            return [letter]
        return [letter, Emit(account_stream, account, None, headers=_source(record, marked))]
    dead = Dead(rejected.reason, rejected.detail)
    headers = (*_source(record, marked), *dead.headers())
    return [Emit(account_stream, account, record.value, headers=headers)]


def _source(record: ConsumerRecord[bytes, bytes], kind: bytes) -> tuple[tuple[str, bytes], ...]:
    return encode_headers(kind, Source.of(record))
