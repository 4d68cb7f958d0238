"""The core's bench: the transactional stage against a bare aiokafka passthrough.

Both read the same framed-size inputs from the same topic on the same broker
in the same run; each is timed from the moment it is ready (partitions
assigned) to its last input processed, so group joins are left out. The
baseline is the limit for Python: consume, produce each record without
awaiting it, wait for the batch's acks, commit. The core does its real work
per input: a table update, two outputs, the changelog, one transaction per
partition batch. Speed is reported as a ratio, never asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry

from streams import kafka
from streams.agents import standin as standin_agent
from streams.catalog import Catalog
from streams.core.stage import Stage
from streams.errors import PasserelleError
from streams.metrics import Metrics
from streams.settings import Settings
from streams.tools import standin

Say = Callable[[str], None]
# A run that processes nothing for this long has failed; say so instead of hanging.
STALL_S = 60


@dataclass(frozen=True)
class Result:
    name: str
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


async def passthrough(settings: Settings, prefix: str, records: int) -> Result:
    """Bare aiokafka: consume → produce without awaiting each send → commit per batch."""
    consumer = kafka.consumer(
        settings,
        f"{prefix}.in",
        group_id=f"{prefix}-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = kafka.producer(settings, linger_ms=5)
    await producer.start()
    await consumer.start()
    done, started = 0, 0.0
    try:
        while done < records:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not started and batches:
                started = time.monotonic()
            futures = [
                await producer.send(f"{prefix}.out-a", r.value, r.key)
                for rs in batches.values()
                for r in rs
            ]
            await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
            done += len(futures)
        return Result("bare aiokafka passthrough", done, time.monotonic() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def core(settings: Settings, prefix: str, records: int) -> Result:
    """The stand-in workload through the transactional stage, in this process."""
    settings = replace(settings, app_id=f"{prefix}-{settings.processing_guarantee}")
    await standin.provision(settings, prefix)  # this run's own changelog
    changelog = Catalog(settings).changelog("standin").name
    stage = Stage(
        standin_agent.spec(standin_agent.StandinTopics(prefix), changelog),
        settings,
        metrics=Metrics(CollectorRegistry()),
    )
    task = asyncio.create_task(stage.run())
    try:
        await stage.ready.wait()
        started = last_progress = time.monotonic()
        seen = 0
        while stage.processed < records:
            if task.done():
                task.result()  # raises what stopped the stage
            if stage.processed > seen:
                seen, last_progress = stage.processed, time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                raise PasserelleError(
                    f"{prefix}: no progress for {STALL_S}s at {seen} of {records}"
                )
            await asyncio.sleep(0.01)
        return Result(
            f"core, {settings.processing_guarantee}", stage.processed, time.monotonic() - started
        )
    finally:
        stage.stop()
        await task


async def run(settings: Settings, records: int, say: Say = print) -> list[Result]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    say(
        f"bench on {settings.bootstrap_servers}: {records} inputs, "
        f"{settings.partitions} partitions, topics {prefix}.*"
    )
    await standin.provision(settings, prefix)
    await standin.produce_inputs(settings, prefix, records, keys=max(1, records // 20))
    results = [await passthrough(settings, prefix, records)]
    say(f"  {results[0].name}: {results[0].rate:,.0f} records/s")
    for guarantee in ("at_least_once", "exactly_once"):
        result = await core(replace(settings, processing_guarantee=guarantee), prefix, records)
        say(f"  {result.name}: {result.rate:,.0f} records/s")
        results.append(result)
    base = results[0].rate
    say(f"\n{'':30} {'records':>9} {'seconds':>8} {'rec/s':>9} {'ratio':>6}")
    for r in results:
        say(f"{r.name:30} {r.records:>9} {r.seconds:>8.2f} {r.rate:>9,.0f} {r.rate / base:>6.3f}")
    return results
