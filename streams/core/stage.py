"""The transactional stage: one ordered, batch-aligned commit per input partition.

A stage reads its input topics in a consumer group and runs its spec's
handler over each partition's batch. This module is the loop; each idea it
runs is a module of its own:

    guarantees.py  the steps of a round under exactly_once or at_least_once
    handling.py    a batch: the handler over each record, dead letters, the
                   changelog record batch; the transaction that commits it
    ownership.py   the partitions owned: producers (fencing), stores, seeks
    recovery.py    a store restored from its changelog; standby.py keeps copies
    group.py       the consumer group: who owns, who follows (placement.py)
    readiness.py   catch-up of the `catch_up` topics, `/readyz`, the gauges
    purge.py       what was committed of one of our own streams, deleted from it

The stage is the guarantee's `Host`: it prepares a batch (`prepare`; in halves
when its changes do not fit one changelog record batch), runs its transaction,
and re-opens or releases a partition when asked. docs/core.md has the protocol.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import kafka
from streams.core import denials, group, guarantees, handling
from streams.core.batches import Built, TooLarge
from streams.core.guarantees import Records
from streams.core.handling import StageFailed
from streams.core.ownership import Ownership, Partition, store_path
from streams.core.purge import Purge
from streams.core.readiness import Readiness
from streams.core.recovery import Recovery
from streams.core.spec import QUIET_FETCH_WAIT_MS, Emit, StageSpec
from streams.core.standby import Standby
from streams.logs import event
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

# How long a poll waits for records before the loop looks at its stop flag.
POLL_TIMEOUT_MS = 200
# How often the stage refreshes its gauges (lag, table keys) and readiness.
REPORT_INTERVAL_S = 1.0


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
        self.guarantee = guarantees.for_settings(settings.processing_guarantee, self)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self.readiness = Readiness(spec.name, spec.catch_up, metrics)
        self.processed = 0
        """Input records committed by this stage since it started."""
        self._next_report = 0.0
        self._failure: StageFailed | None = None
        self.recovery: Recovery | None = None
        """Restores the stores of the partitions it opens (a stateful stage)."""
        self.standby: Standby | None = None
        """Warm copies of partitions other workers own (a stateful stage)."""
        path = functools.partial(store_path, settings, spec.name)
        if spec.changelog is not None:
            assert len(spec.topics) == 1, "a stateful stage reads one input topic"
            self.recovery = Recovery(spec.name, spec.changelog, settings, metrics, path)
            self.standby = Standby(
                spec.name, spec.topics[0], spec.changelog, settings, metrics, path
            )
        self.ownership = Ownership(
            spec, settings, self.group_id, self.guarantee, self.recovery, self.standby,
            left_out=denials.Omissions(metrics, spec.name),
        )  # fmt: skip
        self.purge = Purge(settings, spec.name, enabled=spec.purge)
        self.refused = denials.Refusals(metrics, spec.name)
        """Counts and names the authorization errors the stage meets."""

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        consumer = kafka.consumer(
            self.settings,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=self.spec.fetch_wait_ms,
            quiet_wait_ms=QUIET_FETCH_WAIT_MS,
            partition_assignment_strategy=group.assignors(
                self.settings.standby_replicas,
                self.ownership.held,
                self.standby.place if self.standby else None,
            ),
        )
        self._consumer = self.ownership.consumer = consumer
        listener = group.Listener(self)
        if self.spec.pattern:
            consumer.subscribe(pattern=self.spec.pattern, listener=listener)
        else:
            consumer.subscribe(topics=list(self.spec.topics), listener=listener)
        await consumer.start()
        standby = asyncio.create_task(self.standby.run(self._stopping)) if self.standby else None
        try:
            while not self._stopping.is_set():
                owned = self.ownership.partitions
                batches = await consumer.getmany(
                    # about max_batch per partition (a poll drains partitions in turn)
                    timeout_ms=POLL_TIMEOUT_MS,
                    max_records=self.max_batch * max(1, len(owned)),
                )
                self.ownership.polls += 1
                poll = self.ownership.polls
                if time.monotonic() >= self._next_report:
                    await self._report()
                if not batches:
                    async with self._lock:
                        await self.guarantee.idle()
                    continue
                async with self._lock:
                    # aiokafka hands out records of a new assignment while our listener
                    # still opens it (aio-libs/aiokafka#738): records of a partition
                    # opened since this poll returned were fetched from the group's
                    # committed offset, not from where the open sought it (a stateful
                    # stage resumes where its restored state does): read again there.
                    for tp in list(batches):
                        part = owned.get(tp)
                        if part is None or part.opened_at >= poll:
                            del batches[tp]
                    # One held back since it was opened is read again once resumed.
                    for tp in self.readiness.paused.intersection(batches):
                        if batches[tp]:
                            consumer.seek(tp, batches.pop(tp)[0].offset)
                    await self.guarantee.round(
                        [(owned[tp], records) for tp, records in batches.items()]
                    )
                    await self.guarantee.repair()
                    if self.readiness.paused:
                        await self.readiness.progress(consumer)
            if self._failure is not None:
                raise self._failure
        finally:
            async with self._lock:
                try:
                    await self.guarantee.drain()
                except Exception as exc:  # already raised if it ended the loop
                    log.warning("the last round's commit did not finish (%r): it is redone", exc)
                await self.ownership.close_all()
            await self.purge.close()
            await consumer.stop()
            if standby is not None:
                self._stopping.set()  # ends the standby too, whether stopped or failed
                await standby

    @property
    def ready(self) -> asyncio.Event:
        """Set while the stage owns its partitions and has caught up (`Readiness`)."""
        return self.readiness.ready

    def stop(self) -> None:
        self._stopping.set()

    def fail(self, failure: StageFailed) -> None:
        """Stop, and make `run` raise this."""
        self._failure = failure
        self._stopping.set()

    # -- rebalances: what the consumer's listener calls ---------------------------

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Finish the batch in flight, then stop; producers and stores are kept aside
        until the assignment that follows (`Ownership`), the purge left to the new owner."""
        async with self._lock:
            await self.guarantee.drain()
            await self.guarantee.repair(revoking=True)
            self.ownership.revoke(revoked)
            self.readiness.revoke(revoked)
            self.purge.forget(revoked)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Own the assigned partitions, then hold those that wait for the `catch_up`
        topics."""
        self.metrics.rebalances.inc()
        async with self._lock:
            try:
                await self.ownership.assign(assigned)
            except Exception as exc:
                # aiokafka would only log it and leave the partitions assigned to a
                # member that never reads them: the worker stops instead, loudly
                # (`run` closes what it holds, the kept partitions not yet owned too).
                failure = StageFailed(f"opening the assigned partitions failed: {exc!r}")
                failure.__cause__ = exc  # what it was (an ACL missing: `denials`)
                self.fail(failure)
                return
            assert self._consumer is not None
            await self.readiness.hold_back(self._consumer, assigned)
        self._next_report = 0.0  # readiness is decided on the next loop, not a second later

    # -- what the stage tells operators (and the purge of what it committed) --

    async def _report(self) -> None:
        """Refresh the gauges (lag, table keys) and readiness, once a second."""
        self._next_report = time.monotonic() + REPORT_INTERVAL_S
        self.purge.poke()  # in the background, when due
        assert self._consumer is not None
        async with self._lock:
            await self.readiness.report(self._consumer, self.ownership.partitions, self.stateful)

    # -- one batch ---------------------------------------------------------

    @property
    def restoring(self) -> dict[int, int]:
        """Changelog records left to restore, by partition, while a restore runs."""
        return self.recovery.restoring if self.recovery is not None else {}

    @property
    def stateful(self) -> bool:
        return self.spec.changelog is not None

    async def prepare(
        self, part: Partition, records: Records
    ) -> tuple[Records, list[Emit], Built] | None:
        """The batch's records still to do, its outputs and its changelog record batch;
        None if nothing is left to send (no fresh record, or done in halves)."""
        # A batch fetched before a rebalance may reach a partition opened since at another offset.
        records = [r for r in records if r.offset >= part.next_offset]
        if not records:
            return None
        try:
            emits, changelog = await handling.handle(self.spec, part, records)
        except TooLarge:
            await self._in_halves(part, records)
            return None
        return records, emits, changelog

    async def _in_halves(self, part: Partition, records: Records) -> None:
        """The batch changed more state than one changelog record batch holds: do it in
        two, each in its own round."""
        half = len(records) // 2
        if half == 0:
            raise StageFailed(
                f"one record of {part.tp.topic}-{part.tp.partition} at offset "
                f"{records[0].offset} changes more state than a changelog batch holds"
            )
        await self.guarantee.round([(part, records[:half])])
        if self.owns(part):  # not re-opened after an abort
            await self.guarantee.round([(part, records[half:])])

    def done(self, part: Partition, records: Records) -> None:
        """A batch committed: the partition goes on after it."""
        part.next_offset = records[-1].offset + 1
        self.purge.committed(part.tp, part.next_offset)
        self.processed += len(records)
        self.metrics.child(self.metrics.transactions, "commit").inc()

    async def transaction(
        self, part: Partition, records: Records, emits: Sequence[Emit], changelog: Built
    ) -> Exception | None:
        """`handling.commit` the batch; once committed, the partition goes on after it."""
        failure = await handling.commit(self.spec, self.group_id, part, records, emits, changelog)
        if failure is None:
            self.done(part, records)
        return failure

    def aborted(self, part: Partition, records: Records, exc: Exception) -> None:
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
        self.refused(exc)

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        assert self._consumer is not None
        await self._consumer.commit(dict(offsets))

    def owns(self, part: Partition) -> bool:
        return self.ownership.owns(part)

    async def reopen(self, part: Partition) -> None:
        await self.ownership.reopen(part)

    async def release(self, part: Partition) -> None:
        await self.ownership.release(part)
