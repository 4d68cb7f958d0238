"""Outcomes: each bank's own feed of what became of the records it wrote.

The audit trail and the DLQ hold every bank's records, so no bank may read
them. This stage reads both and writes, for each record of a bank's ingest
topic, one `BankOutcome` to that bank's feed (`bank.<bank_id>.outcomes.v1`):
its transaction id, its partition and offset, FORWARDED, WITHHELD or
DEAD_LETTERED, and why. Nothing else: no account (not even hashed), no psid,
no amount, nothing another bank wrote. The bank's own credentials read it
(`passerelle reconcile --bank B --feed`).

Who a record belongs to is the ingest topic it came from (the Decision's
`source_topic`, a dead letter's `source-topic` header), never what the record
claims: a record on bank A's topic that names bank B is told to A.

The feed is derived from the audit of record in a stage of its own, so it costs
the pipeline's hot path nothing. Its records are optional outputs: a bank whose
feed topic does not exist (`passerelle topics create --bank B` makes both), or
that the worker may not write (`acls apply --bank B` grants it), has its
outcomes left out and counted (`passerelle_outputs_left_out_total`), and holds
back no other bank's feed. Its feed begins when the topic can be written
(within ten seconds); what it missed meanwhile is still in the audit trail and
the DLQ, where `passerelle reconcile --bank B` counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from streams import catalog, model
from streams.codec import Codec
from streams.core.spec import RELAXED_FETCH_WAIT_MS, Emit, StageSpec
from streams.core.store import PartitionStore
from streams.feeds import dead_lettered, decided
from streams.logs import event

log = logging.getLogger(__name__)

READS = (catalog.AUDIT, catalog.DLQ)
"""The topics the stage reads: every app's, so a new app's group starts at their
beginnings (the bench moves a phase's group to their ends)."""


def spec(codec: Codec) -> StageSpec:
    """The stateless stage from the audit trail and the DLQ to the banks' feeds."""

    def handle(record: ConsumerRecord[bytes, bytes], _: PartitionStore) -> Sequence[Emit]:
        told = decided(codec, record) if record.topic == catalog.AUDIT else dead_lettered(record)
        return [] if told is None else [feed_record(codec, *told)]

    def skip(
        record: ConsumerRecord[bytes, bytes], exc: Exception, _: PartitionStore
    ) -> Sequence[Emit]:
        """A record this stage cannot read stays where it is (the audit trail or the
        DLQ, where reconcile counts it); the feed goes on without it, and says so."""
        log.warning(
            "no outcome for %s-%d@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            type(exc).__name__,
            extra=event(
                "outcome_skipped",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            ),
        )
        return []

    # a bank's outcome feed is read in its own time: no need to poll every 10 ms
    return StageSpec(
        "outcomes", handle, topics=READS, on_error=skip, fetch_wait_ms=RELAXED_FETCH_WAIT_MS
    )


def feed_record(codec: Codec, bank: str, outcome: model.BankOutcome) -> Emit:
    """The outcome on its bank's feed, keyed by the source partition."""
    return Emit(
        catalog.outcomes_topic_name(bank),
        str(outcome["source_partition"]).encode(),
        codec.encode(model.BANK_OUTCOME, outcome),
        optional=True,  # a bank without its feed topic must not hold back the others'
    )
