"""Provision and feed the stand-in workload (tests and the core's bench)."""

from __future__ import annotations

import asyncio
import json

from streams import kafka
from streams.catalog import DAY_MS, Catalog, Topic, deleting
from streams.settings import Settings
from streams.tools import topics


def catalog(settings: Settings, prefix: str) -> list[Topic]:
    """The stand-in's topics: input, two outputs, summaries; and the app's changelog."""

    def topic(suffix: str, config: dict[str, str]) -> Topic:
        return Topic(
            f"{prefix}.{suffix}",
            "key",
            (),
            settings.partitions,
            settings.replication_factor,
            config,
        )

    names = ("in", "out-a", "out-b", "summaries")
    return [topic(name, deleting(DAY_MS)) for name in names] + [
        Catalog(settings).changelog("standin")
    ]


async def provision(settings: Settings, prefix: str) -> None:
    await topics.create(settings, catalog(settings, prefix), say=lambda _: None)


async def produce_inputs(
    settings: Settings, prefix: str, count: int, keys: int, first_id: int = 0
) -> None:
    """`count` inputs with ids first_id.. spread round-robin over `keys` keys."""
    producer = kafka.producer(settings, linger_ms=10, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(
                f"{prefix}.in", json.dumps({"id": i}).encode(), f"key-{i % keys}".encode()
            )
            for i in range(first_id, first_id + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
