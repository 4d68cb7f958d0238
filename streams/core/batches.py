"""Writing a batch's records: one record batch per topic-partition.

`AIOKafkaProducer.send` costs a coroutine, a partitioner call and a future
per record, and a stage writes thousands of records per transaction. Here a
batch's records are grouped by topic-partition and appended to aiokafka's
record batch builder (C code), with one future per record batch. Keys are
placed as Kafka's default partitioner places them (murmur2, like aiokafka's
and the Java client's), so a consumer finds a psid where any other producer
would have put it; placements are cached, since the same keys come back.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from streams.errors import PasserelleError


class Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]: ...
    @property
    def partition(self) -> int | None: ...


class SendFailed(PasserelleError):
    """Some record batches were not acknowledged."""

    retriable = True


@lru_cache(maxsize=1 << 17)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key among `partitions`."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class BatchWriter:
    """Sends records through one producer, one record batch per topic-partition."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, int] = {}

    async def send(self, records: Sequence[Record]) -> dict[TopicPartition, int]:
        """Send every record and wait for every acknowledgement; the offset of the
        last record written to each topic-partition. SendFailed if any failed."""
        for topic in {r.topic for r in records if r.partition is None} - self._partitions.keys():
            self._partitions[topic] = len(await self.producer.partitions_for(topic))
        grouped: dict[TopicPartition, list[Record]] = defaultdict(list)
        for record in records:
            grouped[self._place(record)].append(record)
        sent: list[tuple[TopicPartition, int, asyncio.Future[Any]]] = []
        for tp, group in grouped.items():
            builder = self.producer.create_batch()
            for record in group:
                if not _append(builder, record):  # full: send it, start the next with this one
                    sent.append(await self._submit(builder, tp))
                    builder = self.producer.create_batch()
                    _append(builder, record)  # an empty batch takes any record
            sent.append(await self._submit(builder, tp))
        acks = await asyncio.gather(*(future for _, _, future in sent), return_exceptions=True)
        last: dict[TopicPartition, int] = {}
        failed: list[BaseException] = []
        for (tp, count, _), ack in zip(sent, acks, strict=True):
            if isinstance(ack, BaseException):
                failed.append(ack)
            else:
                last[tp] = ack.offset + count - 1
        if failed:
            raise SendFailed(f"{len(failed)} of {len(acks)} record batches failed: {failed[0]!r}")
        return last

    def _place(self, record: Record) -> TopicPartition:
        """Where a record goes (its topic's partition count is known by now)."""
        if record.partition is not None:
            return TopicPartition(record.topic, record.partition)
        count = self._partitions[record.topic]
        if record.key is None:
            return TopicPartition(record.topic, random.randrange(count))
        return TopicPartition(record.topic, partition_of(record.key, count))

    async def _submit(
        self, builder: Any, tp: TopicPartition
    ) -> tuple[TopicPartition, int, asyncio.Future[Any]]:
        count = builder.record_count()
        builder.close()  # complete: the producer sends it without lingering for more
        future = await self.producer.send_batch(builder, tp.topic, partition=tp.partition)
        return tp, count, future


def _append(builder: Any, record: Record) -> bool:
    appended = builder.append(
        timestamp=None, key=record.key, value=record.value, headers=list(record.headers)
    )
    return appended is not None
