"""Reading a stage's changelog into its partition stores: one reader, two modes.

- **Restore** (`Recovery.restore`): an owner, before it processes a partition,
  reads its changelog partition from the store's checkpoint to the changelog's
  end as it is now (its last stable offset: read_committed), then stops.
- **Follow** (`core/standby.py`): a worker keeps warm copies of the partitions
  it does not own, reading on and on.

Both start where `where_to_start` says and apply records with `apply`, which
moves a store's checkpoint to the reader's position: that position steps
over transaction markers, so a store that has read everything is exactly at
the changelog's end and a takeover reads nothing.

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

import enum
import logging
from collections.abc import Callable
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
        stores = dict(stores)
        changelog = {TopicPartition(self.changelog, tp.partition): tp for tp in stores}
        reader = kafka.consumer(self.settings, group_id=None, enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign(list(changelog))
            firsts = await reader.beginning_offsets(list(changelog))
            ends = await reader.end_offsets(list(changelog))
            for ctp, tp in changelog.items():
                stores[tp] = readable(
                    stores[tp], firsts[ctp], ends[ctp], self.store_path(tp), self.stage
                )
                reader.seek(ctp, max(stores[tp].checkpoint, firsts[ctp]))
            restored = await self._read_to_end(reader, changelog, stores, ends)
            for ctp, tp in changelog.items():
                self.metrics.recovery_remaining.labels(self.stage, str(tp.partition)).set(0)
                if restored[ctp]:
                    self._log_restored(tp, restored[ctp])
            self.metrics.restored_records.labels(self.stage).inc(sum(restored.values()))
            return stores
        finally:
            for ctp in changelog:
                self.restoring.pop(ctp.partition, None)
            await reader.stop()

    async def _read_to_end(
        self,
        reader: AIOKafkaConsumer,
        changelog: dict[TopicPartition, TopicPartition],
        stores: dict[TopicPartition, PartitionStore],
        ends: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        """Read every changelog partition to its end; the records restored of each."""
        restored = dict.fromkeys(changelog, 0)
        left = {ctp for ctp, tp in changelog.items() if stores[tp].checkpoint < ends[ctp]}
        while left:
            fetched = await reader.getmany(*left, timeout_ms=1000, max_records=FETCH_RECORDS)
            for ctp in list(left):
                end = ends[ctp]
                records = [r for r in fetched.get(ctp, []) if r.offset < end]
                position = min(await reader.position(ctp), end)
                apply(stores[changelog[ctp]], records, position)
                restored[ctp] += len(records)
                self.restoring[ctp.partition] = end - position
                self.metrics.recovery_remaining.labels(self.stage, str(ctp.partition)).set(
                    end - position
                )
                if position >= end:
                    left.discard(ctp)
        for ctp, tp in changelog.items():
            if stores[tp].checkpoint < ends[ctp]:  # past a last commit marker
                apply(stores[tp], [], ends[ctp])
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
