"""Every record type travels through a real topic and back, framed by the codec."""

from __future__ import annotations

from typing import Any

import pytest

from streams import kafka
from streams.codec import Codec
from streams.settings import Settings
from tests import samples
from tests.conftest import NewTopicFactory, bounded


@pytest.mark.parametrize(("subject", "record"), samples.ALL, ids=[s for s, _ in samples.ALL])
async def test_a_record_survives_a_real_topic(
    settings: Settings, codec: Codec, new_topic: NewTopicFactory, subject: str, record: Any
) -> None:
    """Produced framed, consumed read_committed, decoded: the same record and key."""
    topic = await new_topic("codec")
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, codec.encode(subject, record), key=b"the-key")
    finally:
        await producer.stop()
    consumer = kafka.consumer(settings, topic, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        message = await bounded(consumer.getone())
    finally:
        await consumer.stop()
    assert message.key == b"the-key"
    decoded = codec.decode(subject, message.value)
    newest = samples.as_newest(subject, record)  # as the subject's newest version reads it
    assert {k: decoded[k] for k in newest} == newest
