"""Ingest: bank topics and consents in, the per-account stream (or the DLQ) out.

The record's Avro frame travels on unchanged; headers say what it is
(`kind`: transaction, consent) and where it came from, for the audit trail.
A record that cannot be decoded, or that speaks for another bank or account,
goes to the DLQ with a reason code and its source coordinates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from streams import catalog, model
from streams.codec import Codec
from streams.core.stage import Emit, StageSpec
from streams.core.store import PartitionStore
from streams.errors import CodecError
from streams.logs import event
from streams.metrics import Metrics
from streams.rules import ingest as rules
from streams.rules.ingest import Rejected

log = logging.getLogger(__name__)

KIND_TRANSACTION = b"transaction"
KIND_CONSENT = b"consent"


def spec(
    codec: Codec, account_stream: str, metrics: Metrics, consents_topic: str = catalog.CONSENTS
) -> StageSpec:
    """Metrics count records as handled (a batch retried after an abort counts again)."""

    def handle(record: ConsumerRecord[bytes, bytes], _: PartitionStore) -> Sequence[Emit]:
        bank = catalog.bank_of_topic(record.topic)
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
            return [dead_letter(record, routed)]
        return [Emit(account_stream, routed, record.value, headers=_source(record, kind))]

    pattern = f"({catalog.BANK_TOPIC_PATTERN[:-1]}|^{consents_topic.replace('.', '[.]')})$"
    return StageSpec("ingest", handle, pattern=pattern, catch_up=(consents_topic,))


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


def _source(record: ConsumerRecord[bytes, bytes], kind: bytes) -> tuple[tuple[str, bytes], ...]:
    return (
        ("kind", kind),
        ("source-topic", record.topic.encode()),
        ("source-partition", str(record.partition).encode()),
        ("source-offset", str(record.offset).encode()),
    )


def dead_letter(record: ConsumerRecord[bytes, bytes], rejected: Rejected) -> Emit:
    """The original bytes, keyed as they came, with why and where in the headers."""
    headers = (
        ("reason", rejected.reason.encode()),
        ("error", rejected.detail.encode()),
        *_source(record, b"")[1:],
    )
    return Emit(catalog.DLQ, record.key, record.value, headers=headers)
