"""Standby replicas: warm copies of partitions other workers own.

A stateful stage's worker follows, with a read_committed reader of its own,
the changelog partitions the group's placement gives it (`core/placement.py`,
k copies of each partition, never on its owner), and applies them to the same
RocksDB folders an owner would use. When the group gives it one of them, the
stage restores only what was written since (a few batches) instead of the
whole changelog: failover costs seconds of restore no matter how large the
state is.

Hand-over is explicit: the stage `take`s a partition before opening its
store (the standby closes its copy, and drops whatever it fetched for it
since) and `give_back`s it after closing the store. Each assignment says
which partitions this worker owns and follows (`place`, from
`core/group.py`): a copy no longer placed here is closed, and a store
folder of a partition this worker neither owns nor follows is deleted, so
with k = 0 a worker keeps nothing it does not own. Until a first assignment
under our assignor, nothing is followed and nothing deleted.

The changelog is read with `core/recovery.py`'s `ChangelogReader`, the reader
an owner's restore uses, in its other mode: on and on, without an end.
Records are applied as fetched. A batch's
changelog records are one record batch (and one transaction), so what a store
holds between two fetches may be part of a batch: the owner's restore reads
on to the changelog's end, which is always a batch's end.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import kafka
from streams.core import recovery
from streams.core.store import PartitionStore
from streams.logs import event
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

# How long a fetch waits before the loop looks at hand-overs and its stop flag.
POLL_TIMEOUT_MS = 200
# How long after a failure the following starts again.
RETRY_S = 5


class Standby:
    """Follows the changelog partitions of `topic` placed on this worker as standbys."""

    def __init__(
        self,
        stage: str,
        topic: str,
        changelog: str,
        settings: Settings,
        metrics: Metrics,
        store_path: Callable[[TopicPartition], Path],
    ) -> None:
        self.stage = stage
        self.topic = topic
        self.changelog = changelog
        self.settings = settings
        self.store_path = store_path
        self._taken: set[int] = set()  # partitions the stage owns (their stores are its)
        self._placed: tuple[frozenset[int], frozenset[int]] | None = None
        """The partitions the last assignment gave this worker to own and to follow."""
        self._stores: dict[int, PartitionStore] = {}
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._applied = metrics.standby_records.labels(stage)

    async def take(self, tp: TopicPartition) -> None:
        """Stop following a partition the stage now owns, and close its store."""
        async with self._lock:
            self._taken.add(tp.partition)
            store = self._stores.pop(tp.partition, None)
            if store is not None:
                store.close()
            self._changed.set()

    def give_back(self, tp: TopicPartition) -> None:
        """Follow again a partition whose store the stage has closed."""
        self._taken.discard(tp.partition)
        self._changed.set()

    def place(self, active: frozenset[int], standby: frozenset[int]) -> None:
        """The group's assignment: this worker owns `active` and follows `standby`."""
        self._placed = (active, standby)
        self._changed.set()

    def copies(self) -> dict[int, int]:
        """The partitions followed, each with the changelog offset its copy has reached."""
        return {p: store.checkpoint for p, store in self._stores.items()}

    def warm(self) -> dict[int, int]:
        """The stores this worker holds and does not own, with the changelog offset each
        has read to (0 for a folder on disk whose copy is not open): what it tells the
        group when it joins (`core/group.py`)."""
        on_disk = {p: 0 for p in self._on_disk() if p not in self._taken}
        return on_disk | self.copies()

    async def run(self, stopping: asyncio.Event) -> None:
        """Follow until `stopping` is set. A failure costs only warmth (the owner's restore
        reads what the copies lack), so it is logged and the following starts again."""
        while not stopping.is_set():
            try:
                await self._run_once(stopping)
            except Exception as exc:
                log.warning(
                    "standby copies of stage %s stopped (%r); following again in %ds",
                    self.stage,
                    exc,
                    RETRY_S,
                    extra=event("standby_failed", stage=self.stage),
                )
                await asyncio.sleep(RETRY_S)

    async def _run_once(self, stopping: asyncio.Event) -> None:
        changelog = self.changelog
        async with recovery.changelog_reader(
            self.settings, changelog, self.stage, self._path
        ) as reader:
            try:
                partitions = await _partition_count(reader.consumer, changelog)
                self._changed.set()
                while not stopping.is_set():
                    if self._changed.is_set():
                        await self._follow(reader, partitions)
                    if not self._stores:
                        await _either(self._changed, stopping)
                        continue
                    fetched = await reader.fetch(list(self._stores), POLL_TIMEOUT_MS)
                    async with self._lock:
                        # (a partition taken since the fetch began has no store here any more)
                        applied = await reader.apply(self._stores, fetched, ends=None)
                    self._applied.inc(sum(applied.values()))
            finally:
                async with self._lock:
                    for store in self._stores.values():
                        store.close()
                    self._stores.clear()

    async def _follow(self, reader: recovery.ChangelogReader, partitions: int) -> None:
        """Open the stores of the partitions to follow, close the others', and read each
        changelog partition on from its store's checkpoint."""
        async with self._lock:
            self._changed.clear()
            active, standby = self._placed or (frozenset(), frozenset())
            wanted = standby - self._taken
            for p in set(self._stores) - wanted:
                self._stores.pop(p).close()
            if self._placed is not None:
                self._drop(self._on_disk() - active - standby - self._taken)
            for p in wanted - set(self._stores):
                self._stores[p] = PartitionStore(self._path(p))
            await reader.start_at(self._stores)
        log.info(
            "stage %s keeps standby copies of %d partitions",
            self.stage,
            len(self._stores),
            extra=event("standby", stage=self.stage, partitions=len(self._stores)),
        )

    def _drop(self, partitions: set[int]) -> None:
        """Delete the stores of partitions placed elsewhere (their owners and standbys
        hold them): this worker's disk keeps only what it owns or follows."""
        for p in partitions:
            shutil.rmtree(self._path(p), ignore_errors=True)
        if partitions:
            log.info(
                "stage %s deleted its stores of %d partitions placed on other workers",
                self.stage,
                len(partitions),
                extra=event("stores_dropped", stage=self.stage, partitions=len(partitions)),
            )

    def _on_disk(self) -> set[int]:
        """The partitions of `topic` that have a store folder on this worker's disk."""
        folder = self._path(0).parent
        prefix = f"{self.topic}-"
        if not folder.is_dir():
            return set()
        return {
            int(child.name[len(prefix) :])
            for child in folder.iterdir()
            if child.name.startswith(prefix) and child.name[len(prefix) :].isdigit()
        }

    def _path(self, partition: int) -> Path:
        return self.store_path(TopicPartition(self.topic, partition))


async def _partition_count(reader: AIOKafkaConsumer, topic: str) -> int:
    """How many partitions the changelog has, once provisioning has created it."""
    while not (partitions := await kafka.partitions_of(reader, topic)):
        await asyncio.sleep(1)
    return len(partitions)


async def _either(*events: asyncio.Event) -> None:
    """Wait until one of these events is set."""
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
