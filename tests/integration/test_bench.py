"""The bench's phases are measured apart, on a broker every phase shares."""

from __future__ import annotations

import inspect
import uuid

from aiokafka import TopicPartition

from streams import catalog, kafka
from streams.agents import outcomes
from streams.catalog import Topic
from streams.codec import Codec
from streams.devkit.bench.feed import outcomes_from_now
from streams.settings import Settings
from streams.tools import topics
from tests.conftest import bounded


def test_a_phase_s_outcomes_stage_is_moved_past_what_the_outcomes_stage_reads(
    codec: Codec,
) -> None:
    """By default the group is moved past the topics the outcomes stage reads."""
    default = inspect.signature(outcomes_from_now).parameters["topics"].default
    assert default == outcomes.spec(codec).topics


async def test_a_phase_s_outcomes_group_is_committed_at_the_topics_ends(
    settings: Settings,
) -> None:
    """A new app's outcomes group is committed at its topics' ends as they are, so its
    worker does not go through every earlier phase's records. (Its own topic: a record
    written to the session broker's audit trail would reach every later test.)"""
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    shared = Topic(f"{app_id}.shared", "key", (), 4, 1, catalog.deleting(catalog.DAY_MS))
    await topics.create(settings, [shared], say=lambda _: None)
    producer = kafka.producer(settings)
    await producer.start()
    try:  # an earlier phase's record on every partition
        for p in range(4):
            await bounded(producer.send_and_wait(shared.name, b"earlier", partition=p))
    finally:
        await producer.stop()
    await bounded(outcomes_from_now(settings, app_id, (shared.name,)))
    reader = kafka.consumer(settings, group_id=f"{app_id}-outcomes", enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(shared.name, p) for p in range(4)]
        ends = await bounded(reader.end_offsets(tps))
        committed = {tp: await bounded(reader.committed(tp)) for tp in tps}
    finally:
        await reader.stop()
    assert committed == ends
    assert all(end > 0 for end in ends.values())
