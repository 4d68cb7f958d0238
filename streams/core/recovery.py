"""Reading a stage's changelog into its partition stores: one reader, two modes.

- **Restore** (`Recovery.restore`): an owner, before it processes a partition,
  reads its changelog partition from the store's checkpoint to the changelog's
  end as it is now (its last stable offset: read_committed), then stops.
- **Follow** (`core/standby.py`): a worker keeps warm copies of the partitions
  it does not own, reading on and on.

Both read with one `ChangelogReader`: it starts each partition where
`where_to_start` says (`start_at`) and applies what it fetches (`read`,
bounded by the ends in restore mode), moving a store's checkpoint to the
reader's position: that position steps over transaction markers, so a store
that has read everything is exactly at the changelog's end and a takeover
reads nothing.

A store that restores from far behind (`BULK_LOAD_OFFSETS`) is loaded in bulk
(`PartitionStore.loading`): nothing reads it until its restore ends.

Where a store starts, by its checkpoint against the changelog's first and end
offsets (faust's `tables/recovery.py` checks the same two edges):

- `RESUME`: the checkpoint lies inside the changelog: read on from it.
- `AHEAD`: the checkpoint is past the changelog's end: the changelog was
  re-created, or the store belongs to another cluster. Its contents cannot be
  trusted: wiped, and the changelog read from its start.
- `TRUNCATED`: the checkpoint is before the changelog's first offset: records
  the store never applied are gone (deleted with `kafka-delete-records`, or
  a retention policy set on the topic by hand). Sought to the checkpoint, the
  reader would be moved to an end by its reset policy and skip what is left;
  instead the store is wiped, the changelog read from its start, and the
  rebuild logged.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams import kafka
from streams.core.store import PartitionStore
from streams.logs import event
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

# Records a restore fetch may return at once, over every partition it reads.
FETCH_RECORDS = 10_000
# A store this many offsets behind its changelog's end is restored as a bulk load
# (`PartitionStore.loading`): its writes cost a fifth, but the load ends waiting for its
# last memtable's flush; alone, a store gained nothing below ~300 000 records.
BULK_LOAD_OFFSETS = 100_000

Fetched = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class Start(enum.Enum):
    RESUME = "resume"
    AHEAD = "ahead"
    TRUNCATED = "truncated"


def where_to_start(checkpoint: int, first: int, end: int) -> Start:
    """How a store with this checkpoint reads a changelog partition that holds the
    offsets [first, end)."""
    if checkpoint > end:
        return Start.AHEAD
    if checkpoint < first:
        return Start.TRUNCATED
    return Start.RESUME


def apply(
    store: PartitionStore, records: list[ConsumerRecord[bytes, bytes]], position: int
) -> None:
    """Apply fetched changelog records (a None value is a tombstone) and move the
    store's checkpoint to `position`, where the reader is now."""
    store.apply_changelog([(r.key, r.value) for r in records], position)


def readable(store: PartitionStore, first: int, end: int, path: Path, stage: str) -> PartitionStore:
    """The store to read the changelog partition [first, end) into: this one, or, where
    it cannot be read on (`where_to_start`), a new empty one at `path` (the owner's
    restore and the standby copies alike)."""
    start = where_to_start(store.checkpoint, first, end)
    if start is Start.RESUME:
        return store
    log.warning(
        "store %s %s its changelog (checkpoint %d, changelog %d-%d): rebuilding",
        path.name,
        "is ahead of" if start is Start.AHEAD else "was truncated past",
        store.checkpoint,
        first,
        end,
        extra=event("rebuild", stage=stage, store=path.name, case=start.value),
    )
    store.wipe()
    return PartitionStore(path)


class ChangelogReader:
    """One read_committed reader over a stage's changelog partitions, each read into its
    store: the reader both modes share. Partitions are named by number (the input
    partition's and its changelog partition's are the same)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        changelog: str,
        stage: str,
        store_path: Callable[[int], Path],
    ) -> None:
        self.consumer = consumer
        self.changelog = changelog
        self.stage = stage
        self.store_path = store_path

    def tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.changelog, partition)

    async def start_at(self, stores: dict[int, PartitionStore]) -> dict[int, int]:
        """Read these partitions (only these), each from where its store reads on; a
        store that cannot read on is replaced in `stores` by a new empty one
        (`readable`). The changelog's end offsets, as they are now."""
        changelog = [self.tp(p) for p in sorted(stores)]
        self.consumer.assign(changelog)
        firsts = await self.consumer.beginning_offsets(changelog)
        ends = await self.consumer.end_offsets(changelog)
        for ctp in changelog:
            p, first = ctp.partition, firsts[ctp]
            stores[p] = readable(stores[p], first, ends[ctp], self.store_path(p), self.stage)
            self.consumer.seek(ctp, max(stores[p].checkpoint, first))
        return {ctp.partition: end for ctp, end in ends.items()}

    async def read(
        self,
        stores: dict[int, PartitionStore],
        timeout_ms: int,
        ends: dict[int, int] | None = None,
    ) -> dict[int, int]:
        """One fetch over these partitions, applied to their stores; the records applied
        of each. With `ends`, a partition reads nothing at or past its end."""
        return await self.apply(stores, await self.fetch(stores, timeout_ms), ends)

    async def fetch(self, partitions: Iterable[int], timeout_ms: int) -> Fetched:
        """What the next fetch of these partitions returns (nothing applied yet)."""
        fetched: Fetched = await self.consumer.getmany(
            *(self.tp(p) for p in partitions), timeout_ms=timeout_ms, max_records=FETCH_RECORDS
        )
        return fetched

    async def apply(
        self, stores: dict[int, PartitionStore], fetched: Fetched, ends: dict[int, int] | None
    ) -> dict[int, int]:
        """Apply what was fetched for these partitions to their stores (see `read`)."""
        applied = {}
        for p, store in stores.items():
            end = ends[p] if ends is not None else None
            records = [r for r in fetched.get(self.tp(p), []) if end is None or r.offset < end]
            position = await self.consumer.position(self.tp(p))
            position = position if end is None else min(position, end)
            if records or position > store.checkpoint:  # (or stepped past a marker)
                apply(store, records, position)
            applied[p] = len(records)
        return applied


@contextlib.asynccontextmanager
async def changelog_reader(
    settings: Settings, changelog: str, stage: str, store_path: Callable[[int], Path]
) -> AsyncIterator[ChangelogReader]:
    """A ChangelogReader on a consumer of its own (read_committed, in no group), stopped
    when the block ends, whether its start succeeded or not."""
    consumer = kafka.consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        yield ChangelogReader(consumer, changelog, stage, store_path)
    finally:
        await consumer.stop()


class Recovery:
    """Restores a stage's partition stores from its changelog (the owner's mode)."""

    def __init__(
        self,
        stage: str,
        changelog: str,
        settings: Settings,
        metrics: Metrics,
        store_path: Callable[[TopicPartition], Path],
    ) -> None:
        self.stage = stage
        self.changelog = changelog
        self.settings = settings
        self.metrics = metrics
        self.store_path = store_path
        self.restoring: dict[int, int] = {}
        """Changelog records left to restore, by partition, while a restore runs."""

    async def restore(
        self, stores: dict[TopicPartition, PartitionStore]
    ) -> dict[TopicPartition, PartitionStore]:
        """Bring each store up to its changelog partition's end, all with one reader; the
        stores, those that had to be rebuilt replaced by their new ones."""
        if not stores:
            return stores
        inputs = {tp.partition: tp for tp in stores}
        by_partition = {tp.partition: store for tp, store in stores.items()}

        def path(partition: int) -> Path:
            return self.store_path(inputs[partition])

        try:
            async with changelog_reader(self.settings, self.changelog, self.stage, path) as reader:
                ends = await reader.start_at(by_partition)
                with contextlib.ExitStack() as loading:
                    for p, store in by_partition.items():
                        if ends[p] - store.checkpoint >= BULK_LOAD_OFFSETS:
                            loading.enter_context(store.loading())
                    restored = await self._read_to_end(reader, by_partition, ends)
            for p, tp in inputs.items():
                self.metrics.recovery_remaining.labels(self.stage, str(p)).set(0)
                if restored[p]:
                    self._log_restored(tp, restored[p])
            self.metrics.restored_records.labels(self.stage).inc(sum(restored.values()))
            return {inputs[p]: store for p, store in by_partition.items()}
        finally:
            for p in inputs:
                self.restoring.pop(p, None)

    async def _read_to_end(
        self, reader: ChangelogReader, stores: dict[int, PartitionStore], ends: dict[int, int]
    ) -> dict[int, int]:
        """Read every changelog partition to its end; the records restored of each."""
        restored = dict.fromkeys(stores, 0)
        left = {p: store for p, store in stores.items() if store.checkpoint < ends[p]}
        while left:
            for p, n in (await reader.read(left, timeout_ms=1000, ends=ends)).items():
                restored[p] += n
                remaining = ends[p] - left[p].checkpoint
                self.restoring[p] = remaining
                self.metrics.recovery_remaining.labels(self.stage, str(p)).set(remaining)
                if remaining <= 0:
                    del left[p]
        return restored

    def _log_restored(self, tp: TopicPartition, records: int) -> None:
        log.info(
            "restored %d changelog records for %s-%d",
            records,
            tp.topic,
            tp.partition,
            extra=event(
                "restored",
                stage=self.stage,
                topic=tp.topic,
                partition=tp.partition,
                records=records,
            ),
        )
