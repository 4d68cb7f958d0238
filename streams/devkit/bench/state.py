"""The bench's state phase: a worker's memory, disk and restore time for N accounts."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace

from aiokafka import TopicPartition

from streams import kafka
from streams.catalog import Catalog
from streams.devkit.bench.feed import population, send_all, send_consents, transactions
from streams.devkit.bench.measure import Run, rss_mib, until_decided
from streams.devkit.bench.report import State
from streams.devkit.workerproc import scraped, until_ready
from streams.settings import Settings


async def measure_state(run: Run, accounts: int) -> State:
    bank = f"{run.prefix}-st{accounts}"
    app_id = f"{run.prefix}-state-{accounts}"
    await run.provision(bank, [app_id])
    pop = population(bank, accounts, seed=3)
    await send_consents(run.settings, run.codec, pop)
    await send_all(run.settings, transactions(run.codec, pop, accounts))
    worker = run.worker(app_id, "exactly_once")
    worker.start()
    await until_ready(worker, timeout_s=1800)
    await until_decided(worker, accounts, f"{accounts:,} accounts", run.say)
    await asyncio.sleep(2)  # let RocksDB flush what the last commits wrote
    rss = rss_mib(worker)
    store = scraped(worker, "passerelle_store_memory_bytes") / 2**20
    data = run.folder / app_id
    disk = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 2**20
    worker.stop()
    changelog = Catalog(replace(run.settings, app_id=app_id)).changelog("accounts").name
    records = await _topic_records(run.settings, changelog)
    shutil.rmtree(data)
    run.say(f"    {accounts:,} accounts: restoring {records:,} changelog records from empty…")
    worker.start()
    restore = await until_ready(worker, timeout_s=1800)
    worker.stop()
    await run.retire(bank)
    return State(accounts, rss, disk, records, restore, store)


async def _topic_records(settings: Settings, topic: str) -> int:
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()
