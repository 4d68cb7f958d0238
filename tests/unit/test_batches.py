"""Record placement and whole batches: keys go where Kafka's default partitioner puts them,
and records that must be written whole are one record batch or refused."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.memory_records import MemoryRecords

from streams.core.batches import BatchWriter, TooLarge
from streams.core.spec import Emit
from streams.kafka import partition_of


def test_keys_land_where_the_default_partitioner_puts_them() -> None:
    """For psids, account keys and hashes, and several partition counts, the same partition
    as aiokafka's DefaultPartitioner (murmur2, as the Java client)."""
    keys = [f"psid-{n}".encode() for n in range(500)]
    keys += [f"banque-alpine:FR76{n:020d}".encode() for n in range(500)]
    keys += [b"", b"\x00tick", bytes(range(256))]
    for partitions in (1, 3, 4, 12):
        every = list(range(partitions))
        assert [partition_of(k, partitions) for k in keys] == [
            DefaultPartitioner()(k, every, every) for k in keys
        ]


def test_golden_placements_from_kafkas_own_hash_values() -> None:
    """Kafka's UtilsTest pins murmur2("21") = -973932308, ("foobar") = -790332482 and
    ("a-little-bit-long-string") = -985981536; positive-masked, modulo 12 partitions."""
    keys = (b"21", b"foobar", b"a-little-bit-long-string")
    assert [partition_of(k, 12) for k in keys] == [0, 6, 8]
    assert [partition_of(k, 4) for k in keys] == [0, 2, 0]


def test_whole_puts_each_partitions_records_in_one_record_batch() -> None:
    """Changelog-like records for two partitions become exactly two record batches, each
    holding every record of its partition in order, however far past the producer's
    usual batch size they go."""
    writer = BatchWriter(cast(Any, None))
    records = [Emit("cl", b"k%d" % n, bytes(1000), partition=n % 2) for n in range(600)]
    built = writer.whole(records, max_bytes=1024 * 1024)
    assert [(tp.partition, builder.record_count()) for tp, builder in built] == [(0, 300), (1, 300)]
    for tp, builder in built:
        builder.close()
        encoded = MemoryRecords(bytes(builder._build()))  # the bytes the broker would get
        batch = encoded.next_batch()
        assert [r.key for r in batch] == [b"k%d" % n for n in range(tp.partition, 600, 2)]
        assert encoded.next_batch() is None  # one record batch, nothing after it


def test_whole_refuses_records_that_do_not_fit_one_record_batch() -> None:
    """Rather than split them over two record batches (one could be written without the
    other), `whole` raises TooLarge."""
    writer = BatchWriter(cast(Any, None))
    records = [Emit("cl", b"k%d" % n, bytes(1000), partition=0) for n in range(20)]
    with pytest.raises(TooLarge):
        writer.whole(records, max_bytes=8 * 1024)


class _Metadata:
    """A producer client's metadata: what the brokers hold, and what it has learnt."""

    def __init__(self, brokers: dict[str, int]) -> None:
        self.brokers = brokers
        self.learnt: set[str] = set()
        self.asked: list[str] = []

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.brokers[topic])) if topic in self.learnt else None

    def add_topic(self, topic: str) -> None:
        self.asked.append(topic)

    def force_metadata_update(self) -> None:
        pass


class _Producer:
    """Sends every record batch at once, remembering where each went."""

    def __init__(self, brokers: dict[str, int]) -> None:
        self.client = _Metadata(brokers)
        self.client.cluster = self.client  # type: ignore[attr-defined]  # one stub for both
        self.sent: list[tuple[str, int]] = []
        self.waited: list[str] = []

    async def partitions_for(self, topic: str) -> set[int]:
        """The brokers' answer, waited for: a missing topic is refused."""
        self.waited.append(topic)
        if topic not in self.client.brokers:
            raise UnknownTopicOrPartitionError(topic)
        self.client.learnt.add(topic)
        return set(range(self.client.brokers[topic]))

    def create_batch(self) -> Any:
        from aiokafka.producer.message_accumulator import BatchBuilder

        return BatchBuilder(16384, 0, is_transactional=False)

    async def send_batch(self, builder: Any, topic: str, partition: int) -> Any:
        import asyncio

        self.sent += [(topic, partition)] * builder.record_count()
        future = asyncio.get_running_loop().create_future()
        future.set_result(type("Ack", (), {"offset": 0})())
        return future


async def test_optional_records_of_a_topic_the_brokers_do_not_show_are_left_out_and_told() -> None:
    """The outputs and the present feed are sent (the feed's topic learnt from the brokers
    on first sight: nothing of it is left out); the absent feed's two records are left
    out (not failing the batch) and told with their count, the brokers asked once; a
    second send leaves them out again without waiting."""
    producer = _Producer({"out": 2, "feed-a": 1})
    told: list[tuple[str, int]] = []
    writer = BatchWriter(cast(Any, producer), left_out=lambda t, n: told.append((t, n)))
    records = [
        Emit("out", b"k1", b"v"),
        Emit("feed-a", b"0", b"v", optional=True),
        Emit("feed-b", b"0", b"v", optional=True),
        Emit("feed-b", b"1", b"v", optional=True),
    ]
    await writer.send(records)
    assert sorted(t for t, _ in producer.sent) == ["feed-a", "out"]
    assert told == [("feed-b", 2)]
    assert sorted(producer.waited) == ["feed-a", "feed-b", "out"]
    await writer.send(records)
    assert told == [("feed-b", 2), ("feed-b", 2)]
    assert sorted(producer.waited) == ["feed-a", "feed-b", "out"]  # later: in the background


async def test_a_required_record_of_a_missing_topic_is_waited_for_not_left_out() -> None:
    """Only optional records are ever left out: a required one waits for its topic and
    fails the batch when the brokers refuse it, as every output did before."""
    writer = BatchWriter(cast(Any, _Producer({})), left_out=lambda t, n: None)
    with pytest.raises(UnknownTopicOrPartitionError):
        await writer.send([Emit("feed-b", b"0", b"v", optional=True), Emit("feed-b", b"1", b"v")])
