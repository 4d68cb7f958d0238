"""Where a store starts reading its changelog partition (its checkpoint against the
partition's first and end offsets), and the one reader that restores and follows, without
a broker; restore and standby copies on a broker are in tests/integration/test_stage.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams.core import recovery
from streams.core.recovery import ChangelogReader, Recovery, Start, where_to_start
from streams.core.store import PartitionStore, table_key
from streams.metrics import Metrics
from streams.settings import Settings


@pytest.mark.parametrize(
    ("checkpoint", "first", "end", "start"),
    [
        (0, 0, 0, Start.RESUME),  # a new store, an empty changelog
        (0, 0, 120, Start.RESUME),  # a new store reads it all
        (57, 0, 120, Start.RESUME),  # a store behind reads on
        (120, 0, 120, Start.RESUME),  # at the end: nothing to read
        (120, 120, 120, Start.RESUME),  # everything deleted, but nothing it lacks
        (121, 0, 120, Start.AHEAD),  # past the end: a re-created changelog
        (57, 80, 120, Start.TRUNCATED),  # records it never applied were deleted
        (0, 1, 120, Start.TRUNCATED),  # a new store, the first record gone
    ],
)
def test_a_store_reads_on_only_from_inside_its_changelog(
    checkpoint: int, first: int, end: int, start: Start
) -> None:
    """A checkpoint inside [first, end] resumes; past the end the store is ahead of a
    re-created changelog; before the first offset the records it lacks are gone."""
    assert where_to_start(checkpoint, first, end) is start


class Changelog:
    """A consumer over one changelog partition (0) that holds the offsets [first, end):
    records at even offsets, commit markers at odd ones (a fetch steps over them)."""

    def __init__(self, first: int, end: int) -> None:
        self.first, self.end, self.at = first, end, -1

    def assign(self, tps: list[TopicPartition]) -> None:
        assert tps == [TP]

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: self.first}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: self.end}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.at

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        """Up to four offsets a fetch, and one more record the end does not count (a write
        made after the end was read)."""
        records = [
            ConsumerRecord("cl", 0, o, 0, 0, table_key("t", b"k%d" % o), b"v", None, 0, 0, [])
            for o in range(self.at, min(self.at + 4, self.end + 2))
            if o % 2 == 0
        ]
        self.at = max(self.at, min(self.at + 4, self.end + 2))
        return {TP: records}


TP = TopicPartition("cl", 0)


def reader(changelog: Changelog, tmp_path: Path) -> ChangelogReader:
    consumer = cast(AIOKafkaConsumer, changelog)
    return ChangelogReader(consumer, "cl", "s", lambda p: tmp_path / f"fresh-{p}")


async def test_restore_mode_reads_to_the_end_it_found_and_no_further(tmp_path: Path) -> None:
    """Read with ends, a store applies every record before the end, none after it, and
    its checkpoint stops exactly at the end (past the last marker)."""
    changelog, stores = Changelog(0, 10), {0: PartitionStore(tmp_path / "p0")}
    chl = reader(changelog, tmp_path)
    ends = await chl.start_at(stores)
    while stores[0].checkpoint < ends[0]:
        await chl.read(stores, timeout_ms=0, ends=ends)
    assert stores[0].checkpoint == 10
    assert [o for o in range(12) if stores[0].get("t", b"k%d" % o)] == [0, 2, 4, 6, 8]


async def test_follow_mode_reads_on_and_steps_over_markers(tmp_path: Path) -> None:
    """Read without ends, a store takes what comes after the end it started from, and a
    fetch that returns only a marker still moves its checkpoint."""
    changelog, stores = Changelog(0, 10), {0: PartitionStore(tmp_path / "p0")}
    chl = reader(changelog, tmp_path)
    await chl.start_at(stores)
    for _ in range(3):
        await chl.read(stores, timeout_ms=0)
    assert stores[0].checkpoint == 12 and stores[0].get("t", b"k10") == b"v"
    changelog.at = 13  # a fetch of a marker alone
    await chl.read(stores, timeout_ms=0)
    assert stores[0].checkpoint == 13


async def test_a_store_ahead_of_its_changelog_is_replaced_and_read_from_the_start(
    tmp_path: Path,
) -> None:
    """A checkpoint past the changelog's end: the store is wiped, a new empty one takes
    its place, and the reader starts at the changelog's first offset."""
    ahead = PartitionStore(tmp_path / "p0")
    ahead.apply_changelog([(table_key("t", b"stale"), b"x")], 50)
    changelog, stores = Changelog(4, 10), {0: ahead}
    await reader(changelog, tmp_path).start_at(stores)
    assert stores[0] is not ahead and stores[0].checkpoint == 0 and changelog.at == 4
    assert not (tmp_path / "p0").exists()


@pytest.mark.parametrize(("checkpoint", "bulk"), [(0, True), (12, False)])
async def test_a_store_far_behind_its_changelog_is_restored_as_a_bulk_load(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bulk_loads: list[Path],
    checkpoint: int,
    bulk: bool,
) -> None:
    """A restore of at least BULK_LOAD_OFFSETS loads the store in bulk (`loading`); one
    of a shorter tail writes it as the stage does; both end with every record."""
    changelog = Changelog(0, 20)

    @contextlib.asynccontextmanager
    async def fake_reader(*_: Any, **__: Any) -> AsyncIterator[ChangelogReader]:
        yield reader(changelog, tmp_path)

    monkeypatch.setattr(recovery, "changelog_reader", fake_reader)
    monkeypatch.setattr(recovery, "BULK_LOAD_OFFSETS", 10)
    store = PartitionStore(tmp_path / "p0")
    if checkpoint:
        store.apply_changelog([(table_key("t", b"k%d" % o), b"v") for o in range(0, 12, 2)], 12)

    def path(_: TopicPartition) -> Path:
        return tmp_path / "p0"

    restoring = Recovery("s", "cl", Settings(), Metrics(CollectorRegistry()), path)
    restored = (await restoring.restore({TopicPartition("in", 0): store}))[TopicPartition("in", 0)]
    assert bulk_loads == ([tmp_path / "p0"] if bulk else [])
    assert restored.checkpoint == 20
    assert [o for o in range(22) if restored.get("t", b"k%d" % o)] == list(range(0, 20, 2))
