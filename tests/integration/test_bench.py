"""The bench's phases are measured apart, on a broker every phase shares."""

from __future__ import annotations

from aiokafka import TopicPartition

from streams import catalog, kafka
from streams.devkit.bench.feed import outcomes_from_now
from streams.settings import Settings
from tests.conftest import bounded, fresh_app, unique_bank


async def test_a_phase_s_outcomes_stage_starts_at_the_audit_trail_s_end(
    settings: Settings,
) -> None:
    """A new app's outcomes group is committed at the audit trail's and the DLQ's ends,
    so its worker does not go through every earlier phase's decisions."""
    app = await fresh_app(settings, "bench", [unique_bank()])
    producer = kafka.producer(app)
    await producer.start()
    try:  # an earlier phase's record on every audit partition
        for p in range(app.partitions):
            await bounded(producer.send_and_wait(catalog.AUDIT, b"earlier", partition=p))
    finally:
        await producer.stop()
    await bounded(outcomes_from_now(app, app.app_id))
    reader = kafka.consumer(app, group_id=f"{app.app_id}-outcomes", enable_auto_commit=False)
    await reader.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in (catalog.AUDIT, catalog.DLQ)
            for p in range(app.partitions)
        ]
        ends = await bounded(reader.end_offsets(tps))
        committed = {tp: await bounded(reader.committed(tp)) for tp in tps}
    finally:
        await reader.stop()
    assert committed == ends
    assert all(ends[TopicPartition(catalog.AUDIT, p)] > 0 for p in range(app.partitions))
