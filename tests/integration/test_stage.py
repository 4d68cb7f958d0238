"""The stage's failure paths, in-process on the session broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams import kafka
from streams.core.stage import Emit, Stage, StageFailed, StageSpec
from streams.core.store import PartitionStore
from streams.metrics import Metrics
from streams.settings import Settings
from tests.conftest import NewTopicFactory, bounded


async def read_to_end(settings: Settings, topic: str, isolation: str) -> int:
    consumer = kafka.consumer(settings, group_id=None, isolation_level=isolation)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        count = 0
        while await consumer.position(tp) < end:
            fetched = await bounded(consumer.getmany(tp, timeout_ms=500))
            count += sum(1 for r in fetched.get(tp, []) if r.offset < end)
        return count
    finally:
        await consumer.stop()


async def test_a_handler_failure_aborts_the_batch_and_stops_the_stage(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    """Handlers run over the whole batch before any send: a failure writes nothing, even
    uncommitted, aborts the open transaction and stops the stage with StageFailed."""
    source, sink = await new_topic("in"), await new_topic("out")
    producer = kafka.producer(settings)
    await producer.start()
    try:
        batch = [await producer.send(source, str(i).encode(), b"k") for i in range(10)]
        await asyncio.gather(*batch)
    finally:
        await producer.stop()

    def handle(record: ConsumerRecord[bytes, bytes], _: PartitionStore) -> Sequence[Emit]:
        if record.value == b"7":
            raise ValueError("a bug in a rule")
        return [Emit(sink, record.key, record.value)]

    stage = Stage(
        StageSpec("failing", handle, topics=(source,)),
        Settings(bootstrap_servers=settings.bootstrap_servers, app_id=f"t-{uuid.uuid4().hex[:8]}"),
        metrics=Metrics(CollectorRegistry()),
    )
    with pytest.raises(StageFailed, match=r"handler failed .* ValueError"):
        await bounded(stage.run(), 60)
    assert await read_to_end(settings, sink, "read_committed") == 0
    assert await read_to_end(settings, sink, "read_uncommitted") == 0
    assert (
        stage.metrics.registry.get_sample_value(
            "passerelle_transactions_total", {"result": "abort"}
        )
        == 1
    )
