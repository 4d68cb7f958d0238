"""The project's own brokers: idempotent start, recovery after kill -9, and three nodes."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import stat
import time
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic

from streams import kafka
from streams.devkit import localkafka
from streams.settings import LocalKafkaSettings, Settings

QUIET = {"say": lambda _: None}


def test_up_twice_is_harmless_and_up_after_kill_brings_it_back(
    spare: tuple[localkafka.Cluster, LocalKafkaSettings],
) -> None:
    """A second `up` keeps the same process; after kill -9, `up` starts a new one that answers."""
    cluster, settings = spare
    localkafka.up(cluster, settings, **QUIET)
    first = cluster.nodes[0].pid()
    localkafka.up(cluster, settings, **QUIET)
    assert cluster.nodes[0].pid() == first
    localkafka.kill(cluster.nodes[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cluster.nodes[0].pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    localkafka.up(cluster, settings, **QUIET)
    second = cluster.nodes[0].pid()
    assert second is not None and second != first
    localkafka.down(cluster, **QUIET)
    assert cluster.nodes[0].pid() is None


def test_three_nodes_replicate_with_two_in_sync(
    local_kafka_settings: LocalKafkaSettings, tmp_path: Path
) -> None:
    """The three-node cluster registers three brokers and keeps a topic's three replicas in sync."""
    settings = dataclasses.replace(
        local_kafka_settings, cluster_port=19192, cluster_run_dir=tmp_path / "three"
    )
    cluster = localkafka.Cluster.three(settings)
    try:
        localkafka.up(cluster, settings, **QUIET)
        isr = asyncio.run(_isr_of_new_topic(Settings(bootstrap_servers=cluster.bootstrap)))
        assert isr == 3
    finally:
        localkafka.down(cluster, **QUIET)
    assert all(pid is None for _, pid in localkafka.status(cluster))


async def _isr_of_new_topic(settings: Settings) -> int:
    client = kafka.admin(settings)
    await client.start()
    try:
        await client.create_topics([NewTopic("rf3", 1, 3)])
        for _ in range(50):
            [described] = await client.describe_topics(["rf3"])
            if described["partitions"] and len(described["partitions"][0]["isr"]) == 3:
                return 3
            await asyncio.sleep(0.2)
        return len(described["partitions"][0]["isr"]) if described["partitions"] else 0
    finally:
        await client.close()


async def test_the_brokers_files_are_readable_by_us_only(
    broker: localkafka.Cluster, new_topic: Any
) -> None:
    """The node's folder is 0700 and what the broker writes for a new topic (its folder,
    its log segment and indexes) is ours only: a topic's records hold customers' data."""
    topic = await new_topic("modes")
    (node,) = broker.nodes
    assert stat.S_IMODE(node.dir.stat().st_mode) == 0o700
    folder = node.dir / "data" / f"{topic}-0"
    for _ in range(100):  # the broker makes the folder, then its files, as it creates the topic
        if folder.exists() and len(list(folder.iterdir())) >= 2:
            break
        await asyncio.sleep(0.1)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}
    assert modes[folder.name] == 0o700 and len(modes) > 2  # the folder, a segment, indexes
    assert {n: m for n, m in modes.items() if n != folder.name and m & 0o077} == {}
