"""Ticks: time, travelling through the partitions like any other record.

Time-driven work (consent expiry, the end of a local day) happens when a tick
record is read, never on a wall-clock timer: a tick sits at an offset, so it
is processed in order with the records around it, inside their transaction,
and a replay sees the same time. The ticker writes one tick to every
partition of a stage's input; a test clock writes ticks with chosen times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

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


async def send_ticks(producer: AIOKafkaProducer, topic: str, partitions: int, now_ms: int) -> None:
    """One tick at `now_ms` to every partition of `topic` (the test clock uses this directly)."""
    futures = [
        await producer.send(topic, encode_tick(now_ms), TICK_KEY, partition=p)
        for p in range(partitions)
    ]
    await asyncio.gather(*futures)


class Ticker:
    """Writes the wall-clock time to every partition of a topic every `interval_s`."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        partitions: int,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.partitions = partitions
        self.interval_s = interval_s
        self.clock = clock

    async def run(self, stopping: asyncio.Event) -> None:
        producer = kafka.producer(self.settings)
        await producer.start()
        try:
            while not stopping.is_set():
                await send_ticks(producer, self.topic, self.partitions, int(self.clock() * 1000))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.interval_s)
        finally:
            await producer.stop()
