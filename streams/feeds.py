"""A bank's outcome feed: what became of each record a bank wrote, told to that bank.

`decided` reads an audit Decision and `dead_lettered` a dead letter as the
`BankOutcome` of the bank whose ingest topic the record came from (the Decision's
`source_topic`, the dead letter's `source-topic` header), never the bank the record
claims. The outcomes stage writes what they return to the banks' feeds; reconcile
counts the same way from the audit trail and the DLQ, so both agree by construction.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from streams import catalog, model
from streams.codec import Codec
from streams.errors import CodecError
from streams.stream import Source

MAX_REASON = 64
"""A dead letter's reason is a short code; more than this is cut (a header is not ours)."""

Told = tuple[str, model.BankOutcome]
"""The bank to tell, and what."""


def decided(codec: Codec, record: ConsumerRecord[bytes, bytes]) -> Told | None:
    """A Decision on the audit trail, as its bank's outcome (None: not a Decision on a
    bank's record, e.g. an erasure receipt)."""
    if record.value is None:
        return None
    try:  # most of the trail is Disclosures: only a Decision is decoded
        if codec.subject_of(record.value) != model.DECISION:
            return None
        decision = codec.decode(model.DECISION, record.value)
    except CodecError:
        return None
    bank = catalog.bank_of_topic(decision["source_topic"])
    if bank is None:
        return None
    return bank, {
        "transaction_id": decision["transaction_id"],
        "source_partition": decision["source_partition"],
        "source_offset": decision["source_offset"],
        "outcome": decision["outcome"],
        "reason": decision["reason"],
        "decided_at": decision["decided_at"],
    }


def dead_lettered(record: ConsumerRecord[bytes, bytes]) -> Told | None:
    """A dead letter of a bank's record, as its bank's outcome (None: the dead letter of
    something else, a consent or a customer's message)."""
    source = Source.carried(record)
    bank = catalog.bank_of_topic(source.topic) if source else None
    if source is None or bank is None:
        return None
    reason = dict(record.headers).get("reason", b"UNKNOWN")[:MAX_REASON].decode(errors="replace")
    return bank, {
        "transaction_id": None,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "outcome": "DEAD_LETTERED",
        "reason": reason,
        "decided_at": record.timestamp,
    }
