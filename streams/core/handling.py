"""A batch's handling: the stage's handler over every record of a batch, before
anything is sent (`handle`), and the one Kafka transaction that commits it
(`commit`).

The outputs come out in record order; a stateful stage's changes come out as
one changelog record batch (last, the input offset they bring the state to),
built whole so that Kafka appends all of it or none (`TooLarge` if it cannot
be one: the stage does the batch in halves). A record whose handler raises is
dead-lettered by `spec.on_error` and the batch handled again without it;
without `on_error` the stage stops (`StageFailed`): it would raise again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams import limits
from streams.core.batches import Built, TooLarge
from streams.core.guarantees import SEND_ERRORS, Records
from streams.core.ownership import Partition
from streams.core.spec import Emit, StageSpec
from streams.errors import PasserelleError
from streams.logs import event

log = logging.getLogger(__name__)

# The handler lets the loop run every this many records. A round handles a batch
# of every partition, seconds of CPU on a loaded machine, and aiokafka's
# heartbeats run on this loop: the fault suite's workers held it for 3-6 s at a
# time (passerelle_event_loop_lag_seconds) and their sessions expired while
# they worked. 250 records are a few tens of milliseconds. Some records cost far
# more (a tick scans SCAN_SLICE accounts: ~0.1 s at a million, estimated), so it
# also lets the loop run once YIELD_AFTER_S of handling has passed: at 1 M
# accounts a batch of ticks held it 4-8 s.
YIELD_EVERY = 250
YIELD_AFTER_S = 0.05


class StageFailed(PasserelleError):
    """The stage cannot go on safely: a handler failed on its input (it would again)."""


class _RecordFailed(Exception):
    """The handler raised on the batch's `index`-th record."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index)
        self.index, self.error = index, error


async def handle(spec: StageSpec, part: Partition, records: Records) -> tuple[list[Emit], Built]:
    """Run the handler over the whole batch before anything is sent: its outputs,
    and its state changes as the changelog record batch they are written as
    (last, the input offset they bring the state to).

    A record whose handler raises is dead-lettered by `spec.on_error`: the
    batch's changes are dropped and the batch handled again, that record's
    dead letter in place of its outputs (handlers are deterministic: the
    records before it do exactly what they did). Without `on_error`, nothing
    of the batch is written and the stage stops: it would raise again."""
    store = part.store
    failed: dict[int, Exception] = {}
    while True:
        try:
            emits = await _handle_records(spec, part, records, failed)
            break
        except _RecordFailed as failure:
            record = records[failure.index]
            where = f"{part.tp.topic}-{part.tp.partition}@{record.offset}"
            if spec.on_error is None:
                if store is not None:
                    store.discard()
                raise StageFailed(
                    f"handler failed on {where} (batch {records[0].offset}-"
                    f"{records[-1].offset}): {type(failure.error).__name__}"
                ) from failure.error
            log.warning(
                "handler failed on %s: %s; dead-lettered, the partition goes on",
                where,
                type(failure.error).__name__,
                extra=event(
                    "processing_error",
                    topic=part.tp.topic,
                    partition=part.tp.partition,
                    offset=record.offset,
                    reason=type(failure.error).__name__,
                ),
            )
            failed[failure.index] = failure.error
            if store is not None:
                store.discard()
    if spec.changelog is None or store is None:
        return emits, []
    store.set_input_offset(records[-1].offset + 1)
    p = part.tp.partition
    changes = [Emit(spec.changelog, k, v, partition=p) for k, v in store.pending().items()]
    try:
        built = part.state.whole(changes, limits.MAX_CHANGELOG_BATCH_BYTES)
    except TooLarge:
        store.discard()
        raise
    store.seal()  # the next batch may be handled before this one is committed
    return emits, built


async def _handle_records(
    spec: StageSpec, part: Partition, records: Records, failed: dict[int, Exception]
) -> list[Emit]:
    """The handler's outputs for the batch, the dead letters of `failed` in place of
    theirs; raises _RecordFailed at the first other record whose handler raises."""
    emits: list[Emit] = []
    on_error = spec.on_error
    since = time.monotonic()
    for n, record in enumerate(records):
        if n % YIELD_EVERY == 0 or time.monotonic() - since > YIELD_AFTER_S:
            await asyncio.sleep(0)
            since = time.monotonic()
        if n in failed and on_error is not None:
            emits.extend(on_error(record, failed[n], part.store))  # type: ignore[arg-type]  # stateless stages ignore the store
            continue
        try:
            emits.extend(spec.handler(record, part.store))  # type: ignore[arg-type]  # stateless handlers ignore the store
        except Exception as exc:
            raise _RecordFailed(n, exc) from exc
    return emits


async def commit(
    spec: StageSpec,
    group_id: str,
    part: Partition,
    records: Records,
    emits: Sequence[Emit],
    changelog: Built,
) -> Exception | None:
    """One transaction of the partition's state writer: these outputs (none under
    at_least_once, sent ahead), the changelog record batch and the input offsets,
    committed together; then the store applies the changes. The error if it was not
    committed (or may not have been): the partition must be re-opened.

    The transactional id is the partition's, so a new owner's producer fences this
    one: a member the group has moved on from (a paused worker) never commits state
    or offsets over its successor's."""
    producer = part.state.producer
    try:
        await producer.begin_transaction()
        acked = await part.state.send(emits, changelog)
        await producer.send_offsets_to_transaction({part.tp: records[-1].offset + 1}, group_id)
    except SEND_ERRORS as exc:
        # Nothing of this batch is committed yet: abort it; the partition starts
        # again from what Kafka holds.
        await _abort(producer)
        return exc
    try:
        await producer.commit_transaction()
    except KafkaError as exc:
        # The outcome is unknown, and an abort now could be wrong (KAFKA-17754):
        # the re-opened partition's new producer makes the broker finish the
        # transaction either way, then its state and offset say which it was.
        unknown: Exception = exc
        return unknown
    if part.store is not None and changelog:
        assert spec.changelog is not None
        part.store.commit(acked[TopicPartition(spec.changelog, part.tp.partition)] + 1)
    return None


async def _abort(producer: AIOKafkaProducer) -> None:
    """Abort the open transaction if the producer still can.

    aiokafka turns some connection errors of its sender (a coordinator lookup
    while a broker restarts) into a fatal state in which abort is refused. The
    partition is re-opened anyway, and the new producer, with the same
    transactional id, makes the broker abort what this one left open."""
    try:
        await producer.abort_transaction()
    except Exception as exc:  # the re-open settles the transaction
        log.warning("abort refused (%r); the re-opened partition's producer settles it", exc)
