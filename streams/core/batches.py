"""Writing a batch's records: one record batch per topic-partition.

`AIOKafkaProducer.send` costs a coroutine, a partitioner call and a future
per record, and a stage writes thousands of records per transaction. Here a
batch's records are grouped by topic-partition and appended to aiokafka's
record batch builder (C code), with one future per record batch. Keys are
placed as Kafka's default partitioner places them (murmur2, like aiokafka's
and the Java client's), so a consumer finds a psid where any other producer
would have put it; placements are cached, since the same keys come back.

Some records must be written whole or not at all: a stage's changelog
records of one batch (its state changes and the input offset they reach).
Kafka appends a record batch atomically, so `whole` puts each partition's
share of them in a single record batch, as large as the topic allows, and
refuses (`TooLarge`) rather than split it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.errors import PasserelleError
from streams.kafka import partition_of


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
    @property
    def optional(self) -> bool: ...


LeftOut = Callable[[str, int], None]
"""Told the topic and count of optional records left out of a send."""

# The first time optional records go to a topic the producer has no metadata for,
# the brokers' answer is waited for this long (a round trip, on a healthy cluster).
FIRST_ASK_S = 1.0
# After that, they are asked again in the background at most this often.
ASK_AGAIN_S = 10.0


class SendFailed(PasserelleError):
    """Some record batches were not acknowledged; `causes` says why, one per batch."""

    retriable = True

    def __init__(self, message: str, causes: Sequence[BaseException] = ()) -> None:
        super().__init__(message)
        self.causes = tuple(causes)


class TooLarge(PasserelleError):
    """Records that must go in one record batch do not fit in one."""


Built = Sequence[tuple[TopicPartition, Any]]
"""Closed record batches, each with the topic-partition it goes to."""


class BatchWriter:
    """Sends records through one producer, one record batch per topic-partition."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        transactional: bool = False,
        left_out: LeftOut | None = None,
    ) -> None:
        self.producer = producer
        self.transactional = transactional
        self.left_out = left_out
        self._partitions: dict[str, int] = {}
        self._asked: dict[str, float] = {}
        """Topics optional records were left out for, and when the brokers were asked."""

    def whole(self, records: Sequence[Record], max_bytes: int) -> Built:
        """Records with their partition set, as one record batch per topic-partition
        (Kafka writes each whole or not at all); TooLarge if one exceeds max_bytes."""
        grouped: dict[TopicPartition, list[Record]] = defaultdict(list)
        for record in records:
            assert record.partition is not None, "whole batches go to known partitions"
            grouped[TopicPartition(record.topic, record.partition)].append(record)
        built: list[tuple[TopicPartition, Any]] = []
        for tp, group in grouped.items():
            builder = BatchBuilder(max_bytes, 0, is_transactional=self.transactional)
            for record in group:
                if not _append(builder, record):
                    raise TooLarge(f"{len(group)} records exceed {max_bytes} bytes for {tp.topic}")
            built.append((tp, builder))
        return built

    async def send(self, records: Sequence[Record], whole: Built = ()) -> dict[TopicPartition, int]:
        """Send every record (and the record batches built by `whole`) and wait for every
        acknowledgement; the offset of the last record written to each topic-partition.
        SendFailed if any failed. Optional records of a topic the brokers do not show
        (missing, or not ours to write) are left out and told to `left_out`."""
        records = await self._placeable(records)
        grouped: dict[TopicPartition, list[Record]] = defaultdict(list)
        for record in records:
            grouped[self._place(record)].append(record)
        built: list[tuple[TopicPartition, Any]] = []
        for tp, group in grouped.items():
            builder = self.producer.create_batch()
            for record in group:
                if not _append(builder, record):  # full: keep it, start the next with this one
                    built.append((tp, builder))
                    builder = self.producer.create_batch()
                    _append(builder, record)  # an empty batch takes any record
            built.append((tp, builder))
        sent = [await self._submit(builder, tp) for tp, builder in [*built, *whole]]
        acks = await asyncio.gather(*(future for _, _, future in sent), return_exceptions=True)
        last: dict[TopicPartition, int] = {}
        failed: list[BaseException] = []
        for (tp, count, _), ack in zip(sent, acks, strict=True):
            if isinstance(ack, BaseException):
                failed.append(ack)
            else:
                last[tp] = ack.offset + count - 1
        if failed:
            summary = f"{len(failed)} of {len(acks)} record batches failed: {failed[0]!r}"
            raise SendFailed(summary, failed)
        return last

    async def _placeable(self, records: Sequence[Record]) -> Sequence[Record]:
        """The records whose topic's partitions are known, learning them as needed. For a
        topic only optional records go to, the brokers' answer is waited for once, at
        most FIRST_ASK_S; after that the producer's metadata is read as it is, and the
        brokers asked again in the background at most every ASK_AGAIN_S."""
        unknown = {r.topic for r in records if r.partition is None} - self._partitions.keys()
        if not unknown:  # every batch but a topic's first: no second pass over the records
            return records
        required = {r.topic for r in records if not r.optional}
        missing: set[str] = set()
        for topic in unknown:
            if topic in required:
                self._partitions[topic] = len(await self.producer.partitions_for(topic))
                continue
            found = self.producer.client.cluster.partitions_for_topic(topic)
            if not found and topic not in self._asked:  # first seen: ask, briefly
                self._asked[topic] = time.monotonic()
                try:
                    found = await asyncio.wait_for(self.producer.partitions_for(topic), FIRST_ASK_S)
                except (TimeoutError, KafkaError):
                    found = None
            if found:
                self._partitions[topic] = len(found)
                continue
            missing.add(topic)
            if time.monotonic() - self._asked[topic] >= ASK_AGAIN_S:
                self._asked[topic] = time.monotonic()
                self.producer.client.add_topic(topic)
                self.producer.client.force_metadata_update()  # answered in the background
        if not missing:
            return records
        for topic in missing:
            count = sum(1 for r in records if r.topic == topic)
            if self.left_out is not None:
                self.left_out(topic, count)
        return [r for r in records if r.topic not in missing]

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
