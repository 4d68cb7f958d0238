"""Ticks: time, travelling through the partitions like any other record.

Time-driven work (consent expiry, the end of a local day) happens when a tick
record is read, never on a wall-clock timer: a tick sits at an offset, so it
is processed in order with the records around it, inside their transaction,
and a replay sees the same time. Each worker's ticker writes one tick to every
partition of a stage's input that the worker's stage owns, so a partition gets
one tick a second however many workers there are; a test clock writes ticks
with chosen times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from streams import kafka
from streams.settings import Settings

log = logging.getLogger(__name__)

TICK_KEY = b"\x00tick"


def encode_tick(now_ms: int) -> bytes:
    return json.dumps({"now": now_ms}).encode()


def tick_time(record: ConsumerRecord[bytes, bytes]) -> int | None:
    """The time a tick record carries, or None for any other record."""
    if record.key != TICK_KEY:
        return None
    now: int = json.loads(record.value)["now"]
    return now


async def send_ticks(
    producer: AIOKafkaProducer, topic: str, partitions: Iterable[int], now_ms: int
) -> None:
    """One tick at `now_ms` to each of these partitions of `topic` (the test clock uses
    this directly)."""
    futures = [
        await producer.send(topic, encode_tick(now_ms), TICK_KEY, partition=p) for p in partitions
    ]
    await asyncio.gather(*futures)


class Ticker:
    """Writes the wall-clock time every `interval_s` to the partitions of a topic that
    `owned` names (those its stage owns now: with N workers, ticking every partition
    from each of them made N ticks a partition a second, each one a transaction)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        owned: Callable[[], Iterable[int]],
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.owned = owned
        self.interval_s = interval_s
        self.clock = clock

    async def run(self, stopping: asyncio.Event) -> None:
        producer = kafka.producer(self.settings)
        await producer.start()
        try:
            while not stopping.is_set():
                now_ms = int(self.clock() * 1000)
                await send_ticks(producer, self.topic, self.owned(), now_ms)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.interval_s)
        finally:
            await producer.stop()
