"""The input partitions a stage owns, and what owning one takes.

Opening a partition (`Ownership.open`) starts its producers, as the stage's
guarantee wants them: the transactional one, whose id is the partition's,
fences the previous owner and makes the broker settle its last transaction.
Then its store is restored from the changelog (`core/recovery.py`; the
standby copy, if this worker kept one, is taken over first) and its input
sought to where that state resumes. Closing stops the producers and closes
the store, which the standby copies follow again.

aiokafka's rebalances are eager: every partition is revoked, then most are
given back. A revoked partition is kept aside (`revoke`), its producers and
store open, until the assignment that follows: what it gives back is kept,
the rest closed (`assign`). Re-opening each one (a fencing init, a restore)
cost ~1 s per partition under the fault suite's load, without heartbeats.
docs/core.md, "Rebalances", has the cases.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams import kafka
from streams.core.batches import BatchWriter, LeftOut
from streams.core.guarantees import Guarantee
from streams.core.placement import Held
from streams.core.recovery import Recovery
from streams.core.spec import StageSpec
from streams.core.standby import Standby
from streams.core.store import PartitionStore
from streams.logs import event
from streams.settings import Settings

log = logging.getLogger(__name__)

# The broker aborts a transaction left open this long (a crashed owner's).
TRANSACTION_TIMEOUT_MS = 30_000

NewProducer = Callable[[str | None], AIOKafkaProducer]
"""Makes a producer (not started): transactional with this id, or idempotent (None)."""


def kafka_producers(settings: Settings) -> NewProducer:
    def new(transactional_id: str | None) -> AIOKafkaProducer:
        if transactional_id is None:
            return kafka.producer(settings, max_batch_size=kafka.BATCH_BYTES)
        return kafka.producer(
            settings,
            transactional_id=transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            max_batch_size=kafka.BATCH_BYTES,
        )

    return new


@dataclass
class Partition:
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


class Ownership:
    """The partitions a stage owns (`partitions`), and those revoked but kept aside."""

    def __init__(
        self,
        spec: StageSpec,
        settings: Settings,
        group_id: str,
        guarantee: Guarantee[Partition],
        recovery: Recovery | None,
        standby: Standby | None,
        new_producer: NewProducer | None = None,
        left_out: LeftOut | None = None,
    ) -> None:
        self.spec = spec
        self.left_out = left_out
        """Told of optional outputs left out of a send (`BatchWriter`)."""
        self.new_producer = new_producer or kafka_producers(settings)
        self.settings = settings
        self.group_id = group_id
        self.guarantee = guarantee
        self.recovery = recovery
        self.standby = standby
        self.consumer: AIOKafkaConsumer | None = None
        """The stage's consumer, once it runs: partitions are sought with it."""
        self.partitions: dict[TopicPartition, Partition] = {}
        self.idle: dict[TopicPartition, Partition] = {}
        """Partitions revoked and not yet closed: given back by the next assignment,
        they are not opened again."""
        self.polls = 0
        """Polls the stage's loop has had returned: a partition remembers the count it
        was opened at."""

    @property
    def stateful(self) -> bool:
        return self.spec.changelog is not None

    def held(self) -> Held:
        """What this worker tells its group it holds, when it joins (`core/group.py`):
        the partitions it owned (kept aside through an eager rebalance) and its copies."""
        owned = frozenset(tp.partition for tp in [*self.partitions, *self.idle])
        return Held(owned, self.standby.warm() if self.standby is not None else {})

    def numbers(self) -> list[int]:
        """The numbers of the partitions owned now (a stateful stage reads one topic):
        those its worker's ticker ticks."""
        return sorted(tp.partition for tp in self.partitions)

    def revoke(self, tps: Sequence[TopicPartition]) -> None:
        """Stop owning these; keep them aside, open, for the assignment that follows."""
        for tp in tps:
            part = self.partitions.pop(tp, None)
            if part is not None:
                self.idle[tp] = part

    async def assign(self, tps: Sequence[TopicPartition]) -> tuple[int, int, int]:
        """Own these: close the partitions kept aside that are not among them, keep
        those that are, open the others. How many were kept, opened and closed. If
        opening fails, what was kept and is not owned stays aside (to be closed)."""
        started = time.monotonic()
        idle, self.idle = self.idle, {}
        gone = [part for tp, part in idle.items() if tp not in tps]
        for part in gone:
            await self.close(part)
        kept = {tp: part for tp, part in idle.items() if tp in tps}
        opening = [tp for tp in tps if tp not in self.partitions]
        try:
            await self.open(opening, kept)
        except Exception:
            self.idle = {tp: p for tp, p in kept.items() if tp not in self.partitions}
            raise
        counts = len(kept), len(opening) - len(kept), len(gone)
        self._log_assigned(*counts, seconds=time.monotonic() - started)
        return counts

    def _log_assigned(self, kept: int, opened: int, closed: int, seconds: float) -> None:
        name, owned = self.spec.name, len(self.partitions)
        log.info(
            "stage %s owns %d partitions (%d kept, %d opened, %d closed) after %.2fs",
            *(name, owned, kept, opened, closed, seconds),
            extra=event(
                "assigned",
                stage=name,
                partitions=owned,
                kept=kept,
                closed=closed,
                seconds=round(seconds, 3),
            ),
        )

    async def close_all(self) -> None:
        for part in [*self.partitions.values(), *self.idle.values()]:
            await self.close(part)
        self.partitions.clear()
        self.idle.clear()

    async def open(
        self, tps: Sequence[TopicPartition], kept: dict[TopicPartition, Partition]
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
        keeps = self.guarantee.keeps_position
        own_position = {tp: part.next_offset for tp, part in kept.items() if keeps}
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
                    stores[tp] = PartitionStore(self.store_path(tp))
            assert self.recovery is not None
            restoring = {tp: s for tp, s in stores.items() if tp not in own_position}
            stores |= await self.recovery.restore(restoring)  # some may have been rebuilt
        for tp in tps:
            store = stores.get(tp)
            if tp in own_position:
                start = own_position[tp]
                assert self.consumer is not None
                self.consumer.seek(tp, start)
            else:
                start = await self._seek_start(tp, store)
            roles = self.guarantee.producers(self.stateful)
            outputs = BatchWriter(producers[tp][0], roles[0], self.left_out)
            state = (
                BatchWriter(producers[tp][-1], roles[-1], self.left_out)
                if len(roles) > 1
                else outputs
            )
            self.partitions[tp] = Partition(
                tp, store, producers[tp], outputs, state, start, opened_at=self.polls
            )

    async def _start_producers(self, tp: TopicPartition) -> tuple[AIOKafkaProducer, ...]:
        """The partition's producers, as its guarantee wants them, started. Starting the
        transactional one (its id is the partition's) fences any older owner of the
        partition and ends its open transaction, so the changelog's last stable
        offset can move before we restore."""
        transactional_id = f"{self.group_id}-{tp.topic}-{tp.partition}"
        producers = [
            self.new_producer(transactional_id if transactional else None)
            for transactional in self.guarantee.producers(self.stateful)
        ]
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
        assert self.consumer is not None
        if store is not None:
            start = store.input_offset  # None: no batch ever committed its state
        else:
            start = await kafka.committed(self.consumer, tp)
        if start is None:
            start = (await self.consumer.beginning_offsets([tp]))[tp]
        self.consumer.seek(tp, start)
        return start

    def owns(self, part: Partition) -> bool:
        return self.partitions.get(part.tp) is part

    async def release(self, part: Partition) -> None:
        del self.partitions[part.tp]
        await self.close(part)

    async def reopen(self, part: Partition) -> None:
        await self.close(part)
        await self.open([part.tp], kept={})

    async def close(self, part: Partition) -> None:
        await _stop(part.producers)
        if part.store is not None:
            part.store.close()  # what it has not committed is read again from Kafka
            if self.standby is not None:
                self.standby.give_back(part.tp)

    def store_path(self, tp: TopicPartition) -> Path:
        return store_path(self.settings, self.spec.name, tp)


async def _stop(producers: tuple[AIOKafkaProducer, ...]) -> None:
    for producer in producers:
        await producer.stop()


def store_path(settings: Settings, stage: str, tp: TopicPartition) -> Path:
    """Where the store of one input partition of a stage lives on this worker's disk."""
    return settings.data_dir / settings.app_id / stage / f"{tp.topic}-{tp.partition}"
