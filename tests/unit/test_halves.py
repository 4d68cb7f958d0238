"""A batch whose state changes do not fit one changelog record batch is done in halves,
each its own round, without a broker: the stage's own `prepare` over a real store, and a
guarantee that records the rounds it is given (tests/unit/test_handling.py has the
helpers)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streams import limits
from streams.core.handling import StageFailed
from streams.core.ownership import Partition
from streams.core.spec import Emit, StageSpec
from streams.core.stage import Stage
from streams.core.store import PartitionStore
from streams.metrics import Metrics
from streams.settings import Settings
from tests.unit.test_handling import CHANGELOG, SOURCE, partition, record

THIRD = limits.MAX_CHANGELOG_BATCH_BYTES // 3


class Rounds:
    """A guarantee that prepares each round's batch, commits its state and remembers
    the offsets it did; the partition is re-opened when `abort_first`."""

    def __init__(self, stage: Stage, abort_first: bool = False) -> None:
        self.stage, self.abort_first = stage, abort_first
        self.done: list[list[int]] = []

    async def round(self, batches: Any) -> None:
        for part, records in batches:
            prepared = await self.stage.prepare(part, records)
            if prepared is None:
                continue
            done, _, _ = prepared
            if self.abort_first:
                self.abort_first = False
                part.store.abandon()
                del self.stage.ownership.partitions[part.tp]  # re-opened: another object
                continue
            part.store.commit(len(self.done) + 1)
            self.done.append([r.offset for r in done])


def keep(record: Any, store: PartitionStore) -> list[Emit]:
    """Keeps each record's value under its key: as much state as the record is big."""
    store.put("kept", record.key, record.value)
    return []


def stage_over(tmp_path: Path, store: PartitionStore, **rounds: Any) -> tuple[Stage, Partition]:
    settings = replace(Settings(), data_dir=tmp_path, standby_replicas=0)
    spec = StageSpec("keeping", keep, topics=(SOURCE,), changelog=CHANGELOG)
    stage = Stage(spec, settings, Metrics(CollectorRegistry()))
    stage.guarantee = Rounds(stage, **rounds)  # type: ignore[assignment]  # the recording one
    part = partition(store)
    stage.ownership.partitions[part.tp] = part
    return stage, part


def big(offset: int, size: int = THIRD) -> Any:
    """A record whose handling writes `size` bytes of state."""
    return record(offset, f"k{offset}".encode(), b"x" * size)


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    return PartitionStore(tmp_path / "p0")


async def test_a_batch_too_large_for_one_changelog_batch_is_done_in_two_rounds(
    tmp_path: Path, store: PartitionStore
) -> None:
    """Four records of a third of a changelog batch each: two rounds of two, in order,
    and every record's state is kept."""
    stage, part = stage_over(tmp_path, store)
    assert await stage.prepare(part, [big(o) for o in range(4)]) is None
    assert stage.guarantee.done == [[0, 1], [2, 3]]  # type: ignore[attr-defined]
    assert all(store.get("kept", f"k{o}".encode()) == b"x" * THIRD for o in range(4))


async def test_a_single_record_too_large_for_a_changelog_batch_stops_the_stage(
    tmp_path: Path, store: PartitionStore
) -> None:
    """One record whose changes alone do not fit cannot be halved: the stage stops and
    names the record's place."""
    stage, part = stage_over(tmp_path, store)
    with pytest.raises(StageFailed, match=r"in-0 at offset 9 changes more state"):
        await stage.prepare(part, [big(9, limits.MAX_CHANGELOG_BATCH_BYTES)])


async def test_when_the_first_half_aborts_the_second_is_left_to_the_reopened_partition(
    tmp_path: Path, store: PartitionStore
) -> None:
    """The first half's round aborted and re-opened the partition: this partition object
    does not go on with the second half (the re-opened one reads it again)."""
    stage, part = stage_over(tmp_path, store, abort_first=True)
    await stage.prepare(part, [big(o) for o in range(4)])
    assert not stage.guarantee.abort_first  # type: ignore[attr-defined]  # the first half ran
    assert stage.guarantee.done == []  # type: ignore[attr-defined]
