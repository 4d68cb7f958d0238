"""The processing core under kill -9: a worker subprocess on RocksDB, checked independently."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from streams import kafka
from streams.core.ticks import Ticker, tick_time
from streams.devkit import checker, standin
from streams.settings import Settings
from tests.conftest import NewTopicFactory
from tests.integration.harness import Worker, committed, end_offsets, until_ready

INPUTS = 60_000
KEYS = 500
KILL_AT = (0.3, 0.5, 0.7)
# A run must finish within this, kills and restores included.
RUN_TIMEOUT_S = 240.0


@pytest.fixture
def prefix() -> str:
    return f"core-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "worker-data"


async def wait_for(
    settings: Settings, group: str, topic: str, target: int, worker: Worker
) -> float:
    """Wait until the group has committed `target` records; returns the seconds it took."""
    started = time.monotonic()
    while await committed(settings, group, topic) < target:
        assert worker.alive(), f"worker died; see {worker.log}"
        assert time.monotonic() - started < RUN_TIMEOUT_S, f"stuck; see {worker.log}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def run_with_kills(
    settings: Settings, prefix: str, data_dir: Path, guarantee: str, workers: list[Worker]
) -> checker.Report:
    """Feed the stand-in, kill -9 its worker at each KILL_AT progress, restart, check."""
    await standin.provision(dataclasses.replace(settings, app_id=prefix), prefix)
    await standin.produce_inputs(settings, prefix, INPUTS, KEYS)
    worker = Worker.standin(settings, prefix, data_dir, guarantee)
    workers.append(worker)
    group, topic = f"{prefix}-standin", f"{prefix}.in"
    worker.start()
    for target in KILL_AT:
        await wait_for(settings, group, topic, int(target * INPUTS), worker)
        worker.kill()
        progress = await committed(settings, group, topic) / INPUTS
        print(f"{guarantee}: killed at {progress:.0%} progress")
        # Commits land in steps of a batch, so the kill can come a step past its target;
        # what matters is that the restarted worker is left real work to take over.
        assert progress <= 0.9, f"kill landed at {progress:.0%}: under a tenth of the work left"
        worker.start()
        recovery = await wait_for(
            settings, group, topic, await committed(settings, group, topic) + 1, worker
        )
        print(f"{guarantee}: restart → first commit in {recovery:.2f}s")
    await wait_for(settings, group, topic, INPUTS, worker)
    assert worker.stop() == 0
    report = await checker.check_standin(settings, prefix)
    print(f"{guarantee}: {report.table()}")
    return report


@pytest.mark.timeout(400)
async def test_exactly_once_survives_three_kills(
    settings: Settings, prefix: str, data_dir: Path, workers: list[Worker]
) -> None:
    """kill -9 at 30/50/70 %: every output exactly once, table state equal to the inputs'."""
    report = await run_with_kills(settings, prefix, data_dir, "exactly_once", workers)
    assert report.exact, report.table()


@pytest.mark.timeout(400)
async def test_at_least_once_repeats_only_identical_outputs(
    settings: Settings, prefix: str, data_dir: Path, workers: list[Worker]
) -> None:
    """kill -9 at 30/50/70 % with at_least_once: nothing lost, any repeat identical to the first."""
    report = await run_with_kills(settings, prefix, data_dir, "at_least_once", workers)
    assert report.at_least_once, report.table()


@pytest.mark.timeout(200)
async def test_a_tick_emits_once_with_no_further_input_across_a_restart(
    settings: Settings, prefix: str, data_dir: Path, workers: list[Worker]
) -> None:
    """Ticks alone produce one summary per key; a kill -9 and restart add none."""
    await standin.provision(dataclasses.replace(settings, app_id=prefix), prefix)
    await standin.produce_inputs(settings, prefix, 2_000, 50)
    worker = Worker.standin(settings, prefix, data_dir, "exactly_once", tick_interval=0.3)
    workers.append(worker)
    group, topic = f"{prefix}-standin", f"{prefix}.in"
    worker.start()
    deadline = time.monotonic() + 60
    while len(await kafka.read_all(settings, f"{prefix}.summaries")) < 50:
        assert worker.alive() and time.monotonic() < deadline, f"no summaries; see {worker.log}"
        await asyncio.sleep(0.2)
    worker.kill()
    worker.start()
    await until_ready(worker)  # restored; a SIGTERM before its handlers exist would kill it
    await asyncio.sleep(1.0)  # let the restarted ticker write more ticks
    await wait_for(settings, group, topic, await end_offsets(settings, topic), worker)
    assert worker.stop() == 0
    report = await checker.check_standin(settings, prefix, ticks=True)
    assert report.exact, report.table()


@pytest.mark.timeout(60)
async def test_a_ticker_ticks_only_the_partitions_its_stage_owns(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    """A worker's ticker writes to the partitions its stage owns now and follows them as
    they move: with N workers a partition gets one worker's ticks, not N."""
    topic = await new_topic("ticks", partitions=4)
    owned = [1, 3]
    stopping = asyncio.Event()
    running = asyncio.create_task(Ticker(settings, topic, lambda: owned, 0.1).run(stopping))

    async def ticks() -> Counter[int]:
        records = await kafka.read_all(settings, topic)
        return Counter(r.partition for r in records if tick_time(r) is not None)

    try:
        deadline = time.monotonic() + 30
        while min((now := await ticks())[1], now[3]) < 3:
            assert time.monotonic() < deadline, f"ticks so far: {now}"
        owned = [0]  # a rebalance: this worker now owns partition 0 alone
        while (now := await ticks())[0] < 3:
            assert time.monotonic() < deadline, f"ticks so far: {now}"
    finally:
        stopping.set()
        await running
    # A round's ticks are all acknowledged before the next round: once partition 0 has
    # had three rounds of its own, partitions 1 and 3 have had their last tick.
    after = await ticks()
    assert after[2] == 0
    assert (after[1], after[3]) == (now[1], now[3])
