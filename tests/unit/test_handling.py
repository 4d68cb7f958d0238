"""A batch's handling without a broker: a counting handler over a real RocksDB store;
what comes out (outputs, the changelog record batch) and what the store keeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord

from streams import limits
from streams.core.batches import BatchWriter, TooLarge
from streams.core.handling import StageFailed, handle
from streams.core.ownership import Partition
from streams.core.spec import Emit, OnError, StageSpec
from streams.core.store import INPUT_OFFSET_KEY, PartitionStore, table_key

SOURCE, SINK, CHANGELOG, DEAD = "in", "out", "in-changelog", "dlq"


def record(offset: int, key: bytes, value: bytes = b"v") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(SOURCE, 0, offset, 0, 0, key, value, None, 0, 0, [])


def count(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
    """Counts each key's records; a record whose value is b"bad" raises, b"big" writes
    more than a changelog record batch holds."""
    if record.value == b"bad":
        raise ValueError("a bug in a rule")
    n = int(store.get("counts", record.key) or b"0") + 1
    store.put("counts", record.key, str(n).encode())
    if record.value == b"big":
        store.put("blob", record.key, b"x" * limits.MAX_CHANGELOG_BATCH_BYTES)
    return [Emit(SINK, record.key, str(n).encode())]


def dead_letter(
    record: ConsumerRecord[bytes, bytes], error: Exception, _: PartitionStore
) -> list[Emit]:
    return [Emit(DEAD, record.key, type(error).__name__.encode())]


def spec(on_error: OnError | None = dead_letter) -> StageSpec:
    return StageSpec("counting", count, topics=(SOURCE,), changelog=CHANGELOG, on_error=on_error)


def partition(store: PartitionStore) -> Partition:
    writer = BatchWriter(producer=Any, transactional=True)  # `whole` builds, never sends
    return Partition(TopicPartition(SOURCE, 0), store, (), writer, writer, 0, 0)


def changelog_records(built: Any) -> list[tuple[bytes | None, bytes | None]]:
    """The records of the one changelog record batch, as the broker would get them."""
    ((tp, builder),) = built
    assert tp == TopicPartition(CHANGELOG, 0)
    builder.close()
    encoded = MemoryRecords(bytes(builder._build()))
    records = [(r.key, r.value) for r in encoded.next_batch()]
    assert encoded.next_batch() is None
    return records


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    return PartitionStore(tmp_path / "p0")


async def test_outputs_in_record_order_and_the_state_as_one_batch_ending_with_the_offset(
    store: PartitionStore,
) -> None:
    """Outputs come out in record order; the changes come out as one changelog record
    batch, the input offset they reach last, and stay sealed in the store."""
    batch = [record(10, b"a"), record(11, b"b"), record(12, b"a")]
    emits, built = await handle(spec(), partition(store), batch)
    assert [(e.key, e.value) for e in emits] == [(b"a", b"1"), (b"b", b"1"), (b"a", b"2")]
    assert changelog_records(built) == [
        (table_key("counts", b"a"), b"2"),
        (table_key("counts", b"b"), b"1"),
        (INPUT_OFFSET_KEY, b"13"),
    ]
    assert store.get("counts", b"a") == b"2" and store.pending() == {}


async def test_a_record_that_raises_is_dead_lettered_and_the_others_count_once(
    store: PartitionStore,
) -> None:
    """The failing record's dead letter takes its place; the batch is handled again
    without it, so the records before it are not counted twice."""
    batch = [record(0, b"a"), record(1, b"a", b"bad"), record(2, b"a")]
    emits, built = await handle(spec(), partition(store), batch)
    assert [(e.topic, e.value) for e in emits] == [
        (SINK, b"1"),
        (DEAD, b"ValueError"),
        (SINK, b"2"),
    ]
    assert (table_key("counts", b"a"), b"2") in changelog_records(built)


async def test_without_on_error_a_raising_handler_stops_the_stage_and_leaves_nothing(
    store: PartitionStore,
) -> None:
    """No dead-letter handler: StageFailed names the record, and the store is left as it
    was."""
    batch = [record(0, b"a"), record(1, b"a", b"bad")]
    with pytest.raises(StageFailed, match=r"in-0@1 .* ValueError"):
        await handle(spec(on_error=None), partition(store), batch)
    assert store.get("counts", b"a") is None


async def test_changes_too_large_for_one_record_batch_are_refused_and_forgotten(
    store: PartitionStore,
) -> None:
    """A batch whose changes do not fit one record batch raises TooLarge (the stage then
    does it in halves) and leaves nothing of it in the store."""
    with pytest.raises(TooLarge):
        await handle(spec(), partition(store), [record(0, b"a", b"big")])
    assert store.get("counts", b"a") is None and store.pending() == {}


async def test_a_batch_of_costly_records_lets_the_loop_run_between_them(
    store: PartitionStore,
) -> None:
    """Six records of 30 ms each (a tick's scan costs that and more), far fewer than
    YIELD_EVERY: the loop's other tasks still run during the batch, not only before."""
    ran_during: list[int] = []

    def slow(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        time.sleep(0.03)
        return count(record, store)

    async def beside() -> None:
        while True:
            ran_during.append(1)
            await asyncio.sleep(0)

    task = asyncio.create_task(beside())
    await asyncio.sleep(0)
    ran_during.clear()
    costly = StageSpec("slow", slow, topics=(SOURCE,), changelog=CHANGELOG)
    await handle(costly, partition(store), [record(n, b"a") for n in range(6)])
    task.cancel()
    assert len(ran_during) >= 3
