"""A quiet consumer's fetches: long at the broker only when nothing is left out of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest

from streams import kafka
from streams.settings import Settings
from tests.conftest import NewTopicFactory, bounded

WAIT_MS = 10
QUIET_MS = 5_000  # long enough that a record held by it could not pass for a prompt one


def quiet_consumer(settings: Settings) -> AIOKafkaConsumer:
    return kafka.consumer(
        settings,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=WAIT_MS,
        quiet_wait_ms=QUIET_MS,
    )


def log_fetches(consumer: AIOKafkaConsumer) -> list[tuple[frozenset[int], int]]:
    """Each fetch the consumer sends from now on: the partitions it names, its wait."""
    sent: list[tuple[frozenset[int], int]] = []
    client: Any = consumer._client
    send = client.send

    async def logged(node_id: int, request: Any, **options: Any) -> Any:
        if isinstance(request, FetchRequest):
            named = frozenset(p for _, parts in request.topics for p, *_ in parts)
            sent.append((named, request._max_wait_ms))
        return await send(node_id, request, **options)

    client.send = logged
    return sent


async def produce(settings: Settings, topic: str, partition: int, value: bytes) -> None:
    producer = kafka.producer(settings, transactional_id=f"fetching-{topic}-{partition}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, value, partition=partition)
    finally:
        await producer.stop()


async def test_a_caught_up_consumer_asks_each_broker_once_per_quiet_wait(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    """Caught up on two partitions for 2.5 s, it sends a fetch or two, not one every 10 ms."""
    topic = await new_topic("quiet", partitions=2)
    consumer = quiet_consumer(settings)
    await consumer.start()
    try:
        sent = log_fetches(consumer)
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.getmany(timeout_ms=500)
        await asyncio.sleep(2)
    finally:
        await consumer.stop()
    assert 1 <= len(sent) <= 3, sent  # at WAIT_MS: about 250
    assert all(wait == QUIET_MS for _, wait in sent), sent


async def test_a_record_reaches_a_consumer_whose_fetch_the_broker_holds_at_once(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    """A transaction committed while the held fetch names its partition is read well
    before the quiet wait: the broker answers a read_committed fetch on the commit."""
    topic = await new_topic("quiet", partitions=2)
    consumer = quiet_consumer(settings)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.getmany(timeout_ms=1_000)  # caught up, a quiet fetch held
        sent = log_fetches(consumer)
        started = time.monotonic()
        await produce(settings, topic, 1, b"now")
        batches = await bounded(consumer.getmany(timeout_ms=QUIET_MS * 2))
        waited = time.monotonic() - started
    finally:
        await consumer.stop()
    assert [r.value for records in batches.values() for r in records] == [b"now"]
    assert waited < QUIET_MS / 1000 / 2, (waited, sent)


async def test_a_fetch_that_leaves_a_partition_out_is_held_only_the_short_wait(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    """While one partition's records wait to be taken, the fetches for the other wait
    10 ms, so the first partition's next record is not held behind them for 5 s."""
    topic = await new_topic("quiet", partitions=2)
    first, other = TopicPartition(topic, 0), TopicPartition(topic, 1)
    await produce(settings, topic, 0, b"kept")
    consumer = quiet_consumer(settings)
    await consumer.start()
    try:
        consumer.assign([first, other])
        sent = log_fetches(consumer)

        async def first_fetched() -> None:
            while not consumer._fetcher._records:
                await consumer.getmany(other, timeout_ms=50)

        # the first partition's record fetched; taking only the other's leaves it out
        await bounded(first_fetched())
        await asyncio.sleep(1)  # past aiokafka's 0.2 s before it fetches without it
        assert [r.value for r in (await consumer.getmany(first))[first]] == [b"kept"]
        started = time.monotonic()
        await produce(settings, topic, 0, b"next")
        batches = await bounded(consumer.getmany(first, timeout_ms=QUIET_MS * 2))
        waited = time.monotonic() - started
    finally:
        await consumer.stop()
    assert [r.value for r in batches[first]] == [b"next"]
    assert waited < QUIET_MS / 1000 / 2, (waited, sent)
    left_out = [wait for named, wait in sent if named == {1}]
    assert left_out, sent
    assert set(left_out) == {WAIT_MS}, sent
    assert {wait for named, wait in sent if named == {0, 1}} <= {QUIET_MS}, sent
