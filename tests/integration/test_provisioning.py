"""`topics create` provisions the catalog idempotently and refuses a conflicting shape."""

from __future__ import annotations

import dataclasses

import pytest

from streams.catalog import Catalog
from streams.errors import TopicConflictError
from streams.settings import Settings
from streams.tools import topics
from tests.conftest import unique_bank


async def test_provisioning_twice_creates_once(settings: Settings) -> None:
    """The first run creates a new bank's topic, the second finds everything there."""
    bank = unique_bank()
    wanted = Catalog(settings).all([bank])
    first = await topics.create(settings, wanted, say=lambda _: None)
    second = await topics.create(settings, wanted, say=lambda _: None)
    assert {o.topic: o.action for o in first}[f"bank.{bank}.transactions.v1"] == "created"
    assert {o.action for o in second} == {"exists"}
    existing = await topics.existing_partitions(settings, [t.name for t in wanted])
    assert existing == {t.name: settings.partitions for t in wanted}


async def test_a_conflicting_partition_count_is_refused_and_changes_nothing(
    settings: Settings,
) -> None:
    """A topic with other partitions stops provisioning before any topic is created."""
    conflicting, untouched = unique_bank(), unique_bank()
    await topics.create(settings, [Catalog(settings).bank(conflicting)], say=lambda _: None)
    more = Catalog(dataclasses.replace(settings, partitions=settings.partitions + 2))
    with pytest.raises(
        TopicConflictError, match=f"bank.{conflicting}.transactions.v1 has 4 partitions"
    ):
        await topics.create(
            settings, [more.bank(untouched), more.bank(conflicting)], say=lambda _: None
        )
    assert await topics.existing_partitions(settings, [f"bank.{untouched}.transactions.v1"]) == {}


async def test_topic_configuration_reaches_the_broker(settings: Settings) -> None:
    """The compacted consents topic carries its max.compaction.lag.ms on the broker."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams import kafka

    await topics.create(settings, Catalog(settings).shared(), say=lambda _: None)
    client = kafka.admin(settings)
    await client.start()
    try:
        [response] = await client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "consents.v1")]
        )
    finally:
        await client.close()
    entries = {entry[0]: entry[1] for entry in response.resources[0][4]}
    assert entries["cleanup.policy"] == "compact"
    assert entries["max.compaction.lag.ms"] == "3600000"
