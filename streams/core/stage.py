"""The transactional stage: one ordered, batch-aligned transaction per input partition.

A stage reads its input topics in a consumer group. For each assigned input
partition it owns a transactional producer (id `<app>-<stage>-<topic>-<p>`,
so a new owner fences the old one) and, for a stateful stage, a RocksDB store
restored from the changelog. For every batch of one partition:

    handler(record, store) for each record → begin → send outputs and the
    store's changes (changelog) → wait for every ack → send the input offsets
    → commit → apply the changes to RocksDB

so everything one input causes is committed together with its offset, or not
at all. A send that fails aborts the batch (nothing of it is visible) and the
partition is re-opened from what Kafka committed. A commit that fails is
never followed by an abort (KAFKA-17754): the partition is re-opened, and its
new producer (same transactional id) makes the broker finish the transaction
one way or the other before the state and offset are read back.

With `at_least_once` a batch's outputs go first, through an idempotent
producer of the partition, outside any transaction: readable once
acknowledged. Then its changelog records (which carry the next input offset)
and its input offsets are committed together in a transaction of the
partition's transactional producer, which a new owner fences: a replay starts
from the state that produced the outputs and repeats them identically, and an
owner paused between the two (the fault suite's SIGSTOP) cannot write its old
state after its successor's. That transaction (a round's tail) runs while the
next round is read, handled and its outputs sent; that round's own tail starts
once the one before it is done, so state writes stay in order. A stateless
stage has no state: its tail is one offset commit, refused to a member the
group has moved on from.

Under either guarantee a batch's changelog records for its partition are one
record batch, which Kafka appends whole or not at all: a failed write never
leaves state changes without the input offset they belong to (a batch that
changes more than one record batch holds is processed in halves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalOperation, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from streams import kafka, limits
from streams.core.batches import BatchWriter, Built, SendFailed, TooLarge
from streams.core.spec import Emit, StageSpec
from streams.core.standby import Standby
from streams.core.store import PartitionStore
from streams.errors import PasserelleError
from streams.logs import event
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

# What a failed batch raises: a send not acknowledged (SendFailed), the client's
# errors, and IllegalOperation (not a KafkaError: a fenced producer's transaction
# ended under the batch, and aiokafka refuses its next send).
SEND_ERRORS = (SendFailed, KafkaError, IllegalOperation)

# The handler lets the loop run every this many records. A round handles a batch
# of every partition, seconds of CPU on a loaded machine, and aiokafka's
# heartbeats run on this loop: the fault suite's workers held it for 3-6 s at a
# time (passerelle_event_loop_lag_seconds) and their sessions expired while
# they worked. 250 records are a few tens of milliseconds.
YIELD_EVERY = 250
# How long a poll waits for records before the loop looks at its stop flag.
POLL_TIMEOUT_MS = 200
# The broker aborts a transaction left open this long (a crashed owner's).
TRANSACTION_TIMEOUT_MS = 30_000
# How long the broker may hold a fetch that has nothing new.
FETCH_MAX_WAIT_MS = 10
# How often the stage refreshes its gauges (lag, table keys) and readiness.
REPORT_INTERVAL_S = 1.0


class StageFailed(PasserelleError):
    """The stage cannot go on safely: a handler failed on its input (it would again)."""


class _RecordFailed(Exception):
    """The handler raised on the batch's `index`-th record."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index)
        self.index, self.error = index, error


@dataclass
class _Partition:
    tp: TopicPartition
    store: PartitionStore | None
    producers: tuple[AIOKafkaProducer, ...]
    """Its producers: the first sends the outputs; under at_least_once a stateful stage
    has a second, transactional one for its state (`state`)."""
    writer: BatchWriter
    """Sends the outputs (under exactly_once, in the batch's transaction)."""
    state: BatchWriter
    """Sends the changelog records and input offsets, in a transaction (under
    exactly_once the batch's own, with its outputs: the same writer)."""
    next_offset: int
    """The next input offset this owner processes: records before it are stale."""
    opened_at: int
    """The stage's poll count when the partition was opened: a poll that returned
    before that may hold records fetched from another position."""


Records = list[ConsumerRecord[bytes, bytes]]
"""One partition's records of a poll, in offset order."""


class Stage:
    """Runs one StageSpec until stopped. See the module docstring for the protocol."""

    def __init__(
        self, spec: StageSpec, settings: Settings, metrics: Metrics, max_batch: int | None = None
    ) -> None:
        self.spec = spec
        self.metrics = metrics
        self.settings = settings
        self.max_batch = max_batch or settings.max_batch
        self.group_id = f"{settings.app_id}-{spec.name}"
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._idle: dict[TopicPartition, _Partition] = {}
        """Partitions revoked and not yet closed: given back by the next assignment,
        they are not opened again."""
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()
        """Set once partitions are assigned, their state restored, and the
        `catch_up` topics read up to where they ended at assignment."""
        self.restoring: dict[int, int] = {}
        """Changelog records left to restore, by partition, while a restore runs."""
        self.catching_up: dict[TopicPartition, int] = {}
        """The end offsets a `catch_up` partition must reach before the stage is ready."""
        self.held: set[TopicPartition] = set()
        """Other partitions, paused until the `catch_up` ones reach those offsets."""
        self.processed = 0
        """Input records committed by this stage since it started."""
        self._next_report = 0.0
        self._assigned = False  # the group has given this stage its partitions (maybe none)
        self._polls = 0  # polls returned so far
        self._failure: StageFailed | None = None
        self._tail: asyncio.Task[list[_Partition]] | None = None
        """The last round's commit and state writes, under at_least_once, while they
        run: they return the partitions whose state was not written."""
        self._broken: dict[TopicPartition, _Partition] = {}
        """Partitions whose round's tail failed: re-opened at the next safe point."""
        self.standby: Standby | None = None
        """Warm copies of the partitions this worker does not own (a stateful stage)."""
        if spec.changelog is not None and settings.standby:
            assert len(spec.topics) == 1, "a stateful stage reads one input topic"
            self.standby = Standby(
                spec.name, spec.topics[0], spec.changelog, settings, metrics, self._store_path
            )

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        consumer = kafka.consumer(
            self.settings,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self._consumer = consumer
        listener = _Listener(self)
        if self.spec.pattern:
            consumer.subscribe(pattern=self.spec.pattern, listener=listener)
        else:
            consumer.subscribe(topics=list(self.spec.topics), listener=listener)
        await consumer.start()
        standby = asyncio.create_task(self.standby.run(self._stopping)) if self.standby else None
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(
                    # about max_batch per partition (a poll drains partitions in turn)
                    timeout_ms=POLL_TIMEOUT_MS,
                    max_records=self.max_batch * max(1, len(self._partitions)),
                )
                self._polls += 1
                poll = self._polls
                if time.monotonic() >= self._next_report:
                    await self._report()
                if not batches:
                    if self._tail is not None and self._tail.done():
                        async with self._lock:
                            await self._settle()
                            await self._repair()
                    continue
                async with self._lock:
                    # aiokafka hands out records of a new assignment while our listener
                    # still opens it (aio-libs/aiokafka#738): records of a partition
                    # opened since this poll returned were fetched from the group's
                    # committed offset, which may lie past where the restored state
                    # resumes (at_least_once commits before it writes state); the open
                    # sought to the right place, so they are read again from there.
                    for tp in list(batches):
                        part = self._partitions.get(tp)
                        if part is None or part.opened_at >= poll:
                            del batches[tp]
                    # One held back since it was opened is read again once resumed.
                    for tp in self.held.intersection(batches):
                        if batches[tp]:
                            consumer.seek(tp, batches.pop(tp)[0].offset)
                    await self._round(
                        [(self._partitions[tp], records) for tp, records in batches.items()]
                    )
                    await self._repair()
                    if self.held:
                        await self._catch_up_progress()
            if self._failure is not None:
                raise self._failure
        finally:
            async with self._lock:
                try:
                    await self._settle()
                except Exception as exc:  # already raised if it ended the loop
                    log.warning("the last round's commit did not finish (%r): it is redone", exc)
                for part in [*self._partitions.values(), *self._idle.values()]:
                    await self._close(part)
                self._partitions.clear()
                self._idle.clear()
            await consumer.stop()
            if standby is not None:
                self._stopping.set()  # ends the standby too, whether stopped or failed
                await standby

    def stop(self) -> None:
        self._stopping.set()

    def fail(self, failure: StageFailed) -> None:
        """Stop, and make `run` raise this."""
        self._failure = failure
        self._stopping.set()

    # -- what the stage tells operators ----------------------------------------

    async def _report(self) -> None:
        """Refresh lag and table-size gauges, and readiness once caught up."""
        self._next_report = time.monotonic() + REPORT_INTERVAL_S
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            await self._catch_up_progress()
            keys = 0
            for tp, part in self._partitions.items():
                try:
                    position = await consumer.position(tp)
                except IllegalStateError:  # a rebalance took it away meanwhile
                    continue
                end = consumer.last_stable_offset(tp)
                if end is None or end < 0:
                    end = consumer.highwater(tp)
                if end is not None and end >= 0:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                        max(0, end - position)
                    )
                if part.store is not None:
                    keys += part.store.estimated_keys()
            if self.spec.changelog is not None:
                self.metrics.table_keys.labels(self.spec.name).set(keys)
            if self._assigned and not self.catching_up and not self.ready.is_set():
                self.ready.set()
                self.metrics.stage_ready.labels(self.spec.name).set(1)
                log.info(
                    "stage %s is ready", self.spec.name, extra=event("ready", stage=self.spec.name)
                )

    async def _catch_up_progress(self) -> None:
        """Forget `catch_up` partitions that reached their target; once none is left,
        resume the partitions held back (so no transaction overtakes the consents
        that were already waiting when the stage got its partitions)."""
        assert self._consumer is not None
        for tp, target in list(self.catching_up.items()):
            try:
                if await self._consumer.position(tp) >= target:
                    del self.catching_up[tp]
            except IllegalStateError:  # a rebalance took it away meanwhile
                del self.catching_up[tp]
        if not self.catching_up and self.held:
            self._consumer.resume(*self.held)
            self.held.clear()

    def _not_ready(self) -> None:
        self._assigned = False
        self.ready.clear()
        self.metrics.stage_ready.labels(self.spec.name).set(0)

    # -- one batch ---------------------------------------------------------

    async def _round(self, batches: list[tuple[_Partition, Records]]) -> None:
        """Process one poll's batches, one per partition."""
        if self.exactly_once:
            await asyncio.gather(*(self._process_exactly_once(p, r) for p, r in batches))
        else:
            await self._round_at_least_once(batches)

    async def _prepare(
        self, part: _Partition, records: Records
    ) -> tuple[Records, list[Emit], Built] | None:
        """The batch's records still to do, its outputs and its changelog record batch;
        None if nothing is left to send (no fresh record, or done in halves)."""
        # A batch fetched before a rebalance may reach a partition opened since, at
        # another offset (another worker may have processed those records meanwhile).
        records = [r for r in records if r.offset >= part.next_offset]
        if not records:
            return None
        try:
            emits, changelog = await self._handle(part, records)
        except TooLarge:
            await self._in_halves(part, records)
            return None
        return records, emits, changelog

    async def _in_halves(self, part: _Partition, records: Records) -> None:
        """The batch changed more state than one changelog record batch holds: do it in
        two, each in its own round."""
        half = len(records) // 2
        if half == 0:
            raise StageFailed(
                f"one record of {part.tp.topic}-{part.tp.partition} at offset "
                f"{records[0].offset} changes more state than a changelog batch holds"
            )
        await self._round([(part, records[:half])])
        if self._partitions.get(part.tp) is part:  # not re-opened after an abort
            await self._round([(part, records[half:])])

    def _done(self, part: _Partition, records: Records) -> None:
        """A batch committed: the partition goes on after it."""
        part.next_offset = records[-1].offset + 1
        self.processed += len(records)
        self.metrics.child(self.metrics.transactions, "commit").inc()

    async def _handle(self, part: _Partition, records: Records) -> tuple[list[Emit], Built]:
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
                emits = await self._handle_records(part, records, failed)
                break
            except _RecordFailed as failure:
                record = records[failure.index]
                where = f"{part.tp.topic}-{part.tp.partition}@{record.offset}"
                if self.spec.on_error is None:
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
        if self.spec.changelog is None or store is None:
            return emits, []
        store.set_input_offset(records[-1].offset + 1)
        p = part.tp.partition
        changes = [Emit(self.spec.changelog, k, v, partition=p) for k, v in store.pending().items()]
        try:
            built = part.state.whole(changes, limits.MAX_CHANGELOG_BATCH_BYTES)
        except TooLarge:
            store.discard()
            raise
        store.seal()  # the next batch may be handled before this one is committed
        return emits, built

    async def _handle_records(
        self, part: _Partition, records: Records, failed: dict[int, Exception]
    ) -> list[Emit]:
        """The handler's outputs for the batch, the dead letters of `failed` in place of
        theirs; raises _RecordFailed at the first other record whose handler raises."""
        emits: list[Emit] = []
        on_error = self.spec.on_error
        for n, record in enumerate(records):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if n in failed and on_error is not None:
                emits.extend(on_error(record, failed[n]))
                continue
            try:
                emits.extend(self.spec.handler(record, part.store))  # type: ignore[arg-type]  # stateless handlers ignore the store
            except Exception as exc:
                raise _RecordFailed(n, exc) from exc
        return emits

    def _changelog_end(self, part: _Partition, acked: dict[TopicPartition, int]) -> int:
        """The changelog offset after the batch's last changelog record."""
        assert self.spec.changelog is not None
        return acked[TopicPartition(self.spec.changelog, part.tp.partition)] + 1

    async def _process_exactly_once(self, part: _Partition, records: Records) -> None:
        prepared = await self._prepare(part, records)
        if prepared is None:
            return
        records, emits, changelog = prepared
        outcome = await self._transaction(part, records, emits, changelog)
        if isinstance(outcome, Exception):
            await self._redo(part, records, outcome)

    async def _transaction(
        self, part: _Partition, records: Records, emits: Sequence[Emit], changelog: Built
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
            await producer.send_offsets_to_transaction(
                {part.tp: records[-1].offset + 1}, self.group_id
            )
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
            part.store.commit(self._changelog_end(part, acked))
        self._done(part, records)
        return None

    async def _round_at_least_once(self, batches: list[tuple[_Partition, Records]]) -> None:
        """Every partition's outputs, acknowledged; then, once the round before has
        finished its tail, this round's tail starts (`_finish`) and runs while the
        next round is read and handled.

        A round waits for its outputs' acknowledgements only: the notifications are
        readable then. Its commit and state follow, overlapped with the next round (at
        1 000 transactions a second that took the end-to-end p50 from ~54 to ~35 ms,
        docs/performance.md). A tail that fails leaves its partitions
        broken; their next round's outputs are sent (identical to a replay's, from
        the same state) but not committed, and they are re-opened from what the
        changelog holds."""
        sending = await asyncio.gather(*(self._send_outputs(p, r) for p, r in batches))
        sent = [s for s in sending if s is not None]
        await self._settle()
        sent = [s for s in sent if self._broken.get(s[0].tp) is not s[0]]
        if sent:
            self._tail = asyncio.create_task(self._finish(sent))

    async def _finish(self, sent: list[tuple[_Partition, Records, Built]]) -> list[_Partition]:
        """A round's tail: the partitions' input offsets committed (with their state, for
        a stateful stage); the partitions whose tail failed.

        A stateful stage commits each partition's changelog record batch and input
        offset in one transaction (`_transaction`), which a new owner fences. An
        offset commit followed by a state write could not be fenced: a worker paused
        between the two (SIGSTOP in the fault suite) wrote its old state after its
        successor's newer one, and the next restore read it (one notification of
        84 266 conflicted). A stateless stage has no state to protect: one offset commit
        for the whole round (a broker answers a connection's requests one at a time),
        refused to a member the group has moved on from."""
        if self.spec.changelog is not None:
            failures = await asyncio.gather(*(self._transaction(p, r, (), c) for p, r, c in sent))
            failed = []
            for (part, records, _), failure in zip(sent, failures, strict=True):
                if failure is not None:
                    self._aborted(part, records, failure)
                    failed.append(part)
            return failed
        assert self._consumer is not None
        try:
            await self._consumer.commit({p.tp: r[-1].offset + 1 for p, r, _ in sent})
        except KafkaError as exc:
            # (A CommitFailedError: the group moved on; the rebalance takes the partitions.)
            for part, records, _ in sent:
                self._aborted(part, records, exc)
            return [part for part, _, _ in sent]
        for part, records, _ in sent:
            self._done(part, records)
        return []

    async def _settle(self) -> None:
        """Wait for the last round's tail; the partitions it could not finish are broken.
        A broken partition's store still holds its sealed batches, so a round handled
        meanwhile saw the state its outputs came from: those outputs repeat a replay's.
        Re-opening it (`_repair`) or closing it forgets them."""
        tail = self._tail
        if tail is None:
            return
        try:
            failed = await tail  # (an error other than Kafka's stops the stage, as before)
        finally:
            if self._tail is tail:
                self._tail = None
        for part in failed:
            self._broken[part.tp] = part

    async def _repair(self, revoking: bool = False) -> None:
        """Re-open the broken partitions still owned (from their changelog and offsets),
        or, when they are being revoked, close them (not kept for the next assignment:
        it opens them anew if it gives them back)."""
        broken, self._broken = self._broken, {}
        for tp, part in broken.items():
            if self._partitions.get(tp) is not part:
                continue
            if revoking:
                del self._partitions[tp]
                await self._close(part)
            else:
                await self._reopen(part)

    async def _send_outputs(
        self, part: _Partition, records: Records
    ) -> tuple[_Partition, Records, Built] | None:
        """Handle a batch and send its outputs; what is left to do for it, if anything."""
        prepared = await self._prepare(part, records)
        if prepared is None:
            return None
        records, emits, changelog = prepared
        try:
            await part.writer.send(emits)
        except SEND_ERRORS as exc:
            # What was acknowledged stays (at-least-once); the batch is done again from
            # the state and offset the changelog holds, so it repeats identically.
            await self._redo(part, records, exc)
            return None
        return part, records, changelog

    async def _redo(self, part: _Partition, records: Records, exc: Exception) -> None:
        """A batch whose sends failed: log it, count it, and re-open the partition (once
        the round before has finished with it)."""
        self._aborted(part, records, exc)
        await self._settle()
        await self._reopen(part)

    def _aborted(self, part: _Partition, records: Records, exc: Exception) -> None:
        log.warning(
            "batch aborted on %s-%d at offset %d: %s",
            part.tp.topic,
            part.tp.partition,
            records[0].offset,
            exc,
            extra=event(
                "abort",
                stage=self.spec.name,
                topic=part.tp.topic,
                partition=part.tp.partition,
                offset=records[0].offset,
                records=len(records),
            ),
        )
        self.metrics.transactions.labels(result="abort").inc()

    # -- assignment ----------------------------------------------------------

    async def _own(
        self, tps: Sequence[TopicPartition], kept: dict[TopicPartition, _Partition]
    ) -> None:
        """Open these partitions: restore their state and seek their input. Those in
        `kept` were ours in the generation before and keep their producer and store
        (under exactly_once their position too, see below; under at_least_once their
        state is read on from its checkpoint and their input sought like any other);
        the others get a new producer, started together, which fences their previous
        owner."""
        new = [tp for tp in tps if tp not in kept]
        started = await asyncio.gather(
            *(self._start_producers(tp) for tp in new), return_exceptions=True
        )
        if failed := [e for e in started if isinstance(e, BaseException)]:
            for pair in started:
                if isinstance(pair, tuple):
                    await _stop(pair)
            raise failed[0]
        producers = {tp: part.producers for tp, part in kept.items()}
        producers |= {tp: p for tp, p in zip(new, started, strict=True)}
        # Under exactly_once a kept partition resumes at its own position, and Kafka is
        # not asked: right after our last commit its markers may still be on their way,
        # so the group's offset and the changelog's stable end can lag behind it (CI
        # caught 1 959 ingest records read twice that way). Had another owner taken the
        # partition in between, its producer fenced ours, and our first transaction
        # fails and re-opens the partition the full way before anything is committed.
        own_position = {tp: part.next_offset for tp, part in kept.items() if self.exactly_once}
        stores: dict[TopicPartition, PartitionStore] = {}
        if self.spec.changelog is not None:
            for tp in tps:
                if tp in kept:
                    store = kept[tp].store
                    assert store is not None
                    stores[tp] = store
                else:
                    if self.standby is not None:
                        await self.standby.take(tp)
                    stores[tp] = PartitionStore(self._store_path(tp))
            restoring = {tp: s for tp, s in stores.items() if tp not in own_position}
            await self._restore(restoring)
            stores |= restoring  # a store found ahead of its changelog was rebuilt
        for tp in tps:
            store = stores.get(tp)
            if tp in own_position:
                start = own_position[tp]
                assert self._consumer is not None
                self._consumer.seek(tp, start)
            else:
                start = await self._seek_start(tp, store)
            outputs = BatchWriter(producers[tp][0], self.exactly_once)
            state = BatchWriter(producers[tp][1], True) if len(producers[tp]) > 1 else outputs
            self._partitions[tp] = _Partition(
                tp, store, producers[tp], outputs, state, start, opened_at=self._polls
            )

    async def _start_producers(self, tp: TopicPartition) -> tuple[AIOKafkaProducer, ...]:
        """The partition's producers, started: the transactional one that fences any
        older owner of the partition and ends its open transaction (so the
        changelog's last stable offset can move before we restore), and under
        at_least_once, first, the idempotent one its outputs are sent by, ahead of
        the transaction (a stateless stage, without state, commits its offsets with
        its consumer and needs no other)."""
        transactional = self.exactly_once or self.spec.changelog is not None
        producers = []
        if not self.exactly_once:
            # One idempotent producer per partition too: aiokafka keeps one
            # request in flight per producer and broker, so a shared producer
            # would serialise every partition's sends.
            producers.append(kafka.producer(self.settings, max_batch_size=kafka.BATCH_BYTES))
        if transactional:
            producers.append(
                kafka.producer(
                    self.settings,
                    transactional_id=f"{self.group_id}-{tp.topic}-{tp.partition}",
                    transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                    max_batch_size=kafka.BATCH_BYTES,
                )
            )
        started = await asyncio.gather(*(p.start() for p in producers), return_exceptions=True)
        if failed := [e for e in started if isinstance(e, BaseException)]:
            await _stop(tuple(p for p, e in zip(producers, started, strict=True) if e is None))
            raise failed[0]
        return tuple(producers)

    async def _seek_start(self, tp: TopicPartition, store: PartitionStore | None) -> int:
        """Seek to where this owner resumes, and return it. A stateful stage resumes at
        the input offset its restored state was built to (from the start if none was
        ever written); a stateless one at the group's committed offset, read only now
        that our producer has fenced the previous owner (its last commit is settled)."""
        assert self._consumer is not None
        if store is not None:
            start = store.input_offset  # None: no batch ever committed its state
        else:
            start = await self._consumer.committed(tp)
        if start is None:
            start = (await self._consumer.beginning_offsets([tp]))[tp]
        self._consumer.seek(tp, start)
        return start

    async def _reopen(self, part: _Partition) -> None:
        await self._close(part)
        await self._own([part.tp], kept={})

    async def _close(self, part: _Partition) -> None:
        await _stop(part.producers)
        if part.store is not None:
            part.store.close()  # what it has not committed is read again from Kafka
            if self.standby is not None:
                self.standby.give_back(part.tp)

    def _store_path(self, tp: TopicPartition) -> Path:
        return (
            self.settings.data_dir
            / self.settings.app_id
            / self.spec.name
            / f"{tp.topic}-{tp.partition}"
        )

    async def _restore(self, stores: dict[TopicPartition, PartitionStore]) -> None:
        """Bring each partition's store up to its changelog's last stable offset, all
        with one reader; a store ahead of its changelog is wiped and rebuilt."""
        assert self.spec.changelog is not None
        if not stores:
            return
        changelog = {TopicPartition(self.spec.changelog, tp.partition): tp for tp in stores}
        reader = kafka.consumer(self.settings, group_id=None, enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign(list(changelog))
            ends = await reader.end_offsets(list(changelog))
            for ctp, tp in changelog.items():
                if stores[tp].checkpoint > ends[ctp]:
                    log.warning(
                        "store of %s-%d is ahead of its changelog (%d > %d): rebuilding",
                        tp.topic,
                        tp.partition,
                        stores[tp].checkpoint,
                        ends[ctp],
                    )
                    stores[tp].wipe()
                    stores[tp] = PartitionStore(self._store_path(tp))
                reader.seek(ctp, stores[tp].checkpoint)
            restored = dict.fromkeys(changelog, 0)
            left = {ctp for ctp, tp in changelog.items() if stores[tp].checkpoint < ends[ctp]}
            while left:
                fetched = await reader.getmany(*left, timeout_ms=1000, max_records=10_000)
                for ctp in list(left):
                    store, end = stores[changelog[ctp]], ends[ctp]
                    records = [(r.key, r.value) for r in fetched.get(ctp, []) if r.offset < end]
                    position = min(await reader.position(ctp), end)
                    store.apply_changelog(records, position)
                    restored[ctp] += len(records)
                    self.restoring[ctp.partition] = end - position
                    self.metrics.recovery_remaining.labels(self.spec.name, str(ctp.partition)).set(
                        end - position
                    )
                    if position >= end:
                        left.discard(ctp)
            for ctp, tp in changelog.items():
                stores[tp].apply_changelog([], ends[ctp])  # past a last commit marker
                self.metrics.recovery_remaining.labels(self.spec.name, str(tp.partition)).set(0)
                if restored[ctp]:
                    self._log_restored(tp, restored[ctp])
            self.metrics.restored_records.labels(self.spec.name).inc(sum(restored.values()))
        finally:
            for ctp in changelog:
                self.restoring.pop(ctp.partition, None)
            await reader.stop()

    def _log_restored(self, tp: TopicPartition, records: int) -> None:
        log.info(
            "restored %d changelog records for %s-%d",
            records,
            tp.topic,
            tp.partition,
            extra=event(
                "restored",
                stage=self.spec.name,
                topic=tp.topic,
                partition=tp.partition,
                records=records,
            ),
        )


async def _stop(producers: tuple[AIOKafkaProducer, ...]) -> None:
    for producer in producers:
        await producer.stop()


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


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's base is untyped
    """Finishes the batch in flight before partitions go, restores state before they come."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Finish the batch in flight, then stop processing. The partitions' producers
        and stores are kept until the assignment that follows: aiokafka's rebalances
        take every partition away and give most of them back, and re-opening those
        (a producer's fencing, a restore) would cost seconds without heartbeats."""
        stage = self.stage
        async with stage._lock:
            await stage._settle()
            await stage._repair(revoking=True)
            for tp in revoked:
                part = stage._partitions.pop(tp, None)
                if part is not None:
                    stage._idle[tp] = part
                stage.catching_up.pop(tp, None)
                stage.held.discard(tp)
                with contextlib.suppress(KeyError):  # no lag reported for it yet
                    stage.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            stage._not_ready()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Close what was not given back, open the rest, then hold the partitions that
        wait for the `catch_up` topics."""
        stage = self.stage
        stage.metrics.rebalances.inc()
        started = time.monotonic()
        async with stage._lock:
            idle, stage._idle = stage._idle, {}
            gone = [part for tp, part in idle.items() if tp not in assigned]
            for part in gone:
                await stage._close(part)
            kept = {tp: part for tp, part in idle.items() if tp in assigned}
            opening = [tp for tp in assigned if tp not in stage._partitions]
            try:
                await stage._own(opening, kept)
            except Exception as exc:
                # aiokafka would only log it and leave the partitions assigned to a
                # member that never reads them: the worker stops instead, loudly
                # (`run` closes what it holds, the kept partitions not yet owned too).
                stage._idle = {tp: p for tp, p in kept.items() if tp not in stage._partitions}
                stage.fail(StageFailed(f"opening the assigned partitions failed: {exc!r}"))
                return
            backlog = [tp for tp in assigned if tp.topic in stage.spec.catch_up]
            if backlog and stage._consumer is not None:
                stage.catching_up.update(await stage._consumer.end_offsets(backlog))
                await stage._catch_up_progress()
                if stage.catching_up:
                    stage.held = {tp for tp in assigned if tp.topic not in stage.spec.catch_up}
                    stage._consumer.pause(*stage.held)
            stage._assigned = True
            seconds = time.monotonic() - started
            log.info(
                "stage %s owns %d partitions (%d kept, %d opened, %d closed) after %.2fs",
                stage.spec.name,
                len(stage._partitions),
                len(kept),
                len(opening) - len(kept),
                len(gone),
                seconds,
                extra=event(
                    "assigned",
                    stage=stage.spec.name,
                    partitions=len(stage._partitions),
                    kept=len(kept),
                    closed=len(gone),
                    seconds=round(seconds, 3),
                ),
            )
        stage._next_report = 0.0  # readiness is decided on the next loop, not a second later
