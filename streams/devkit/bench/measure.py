"""Measuring the pipeline: real worker processes, timed by their own metrics."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from streams import catalog, kafka, model
from streams.catalog import Catalog, Topic
from streams.codec import Codec, EmbeddedRegistry
from streams.devkit.bench.feed import (
    Population,
    outcomes_from_now,
    passthrough,
    population,
    send_all,
    send_consents,
    transaction,
    transactions,
)
from streams.devkit.bench.footprint import footprint
from streams.devkit.bench.report import Footprint, Latency, Throughput
from streams.devkit.workerproc import Worker, metric_sum, metrics_page, scraped, until_ready
from streams.errors import PasserelleError
from streams.settings import Settings
from streams.tools import topics

Say = Callable[[str], None]
# A run that makes no progress for this long has failed; say so instead of hanging.
STALL_S = 90
LATENCY_SECONDS = 8.0
WARMUP_SECONDS = 5.0
"""Offered at the first rate before the measured phases, not reported: a worker's first
seconds under load (its first transactions, metadata, caches) are not its steady state
(measured from cold, `make bench --quick` of 2026-12-06 06:11: the first phase's p99,
at 500/s, was 3–5× the next one's, at 1 000/s)."""
SHARES = (0.1, 0.3, 0.6)
"""Latency is also measured at these shares of the run's own measured capacity."""


DECISIONS = "passerelle_decisions_total"


def decided(worker: Worker) -> float:
    """Transactions the worker has decided (its broker carries one bank at a time)."""
    return scraped(worker, DECISIONS)


def cpu_seconds(worker: Worker) -> float:
    """The worker process's CPU time so far, user and system (`/proc/<pid>/stat`)."""
    assert worker.process is not None
    fields = Path(f"/proc/{worker.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(worker: Worker) -> float:
    assert worker.process is not None
    status = Path(f"/proc/{worker.process.pid}/status").read_text()
    kib = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")))
    return kib / 1024


async def first_decision(worker: Worker) -> tuple[float, float]:
    """When the worker's first decisions appear, and how many there are then: the
    pipeline is timed from its first decision to its last, so start-up (joins,
    restore) is left out as it is for the baseline."""
    while True:
        if not worker.alive():
            raise PasserelleError(f"the worker exited; see {worker.log}")
        try:
            done = decided(worker)
        except OSError:  # its web server is not up yet
            done = 0
        if done:
            return time.monotonic(), done
        await asyncio.sleep(0.02)


async def until_decided(worker: Worker, total: float, what: str, say: Say) -> None:
    """Wait until the worker has decided `total` transactions, saying how far it is."""
    seen, last_progress, last_said = -1.0, time.monotonic(), 0.0
    while True:
        text = metrics_page(worker)  # one scrape per look
        if (done := metric_sum(text, DECISIONS)) >= total:
            return
        now = time.monotonic()
        # Committed batches count as progress too: consents, read first, decide nothing.
        moved = done + metric_sum(text, "passerelle_transactions_total")
        if moved > seen:
            seen, last_progress = moved, now
        elif now - last_progress > STALL_S:
            raise PasserelleError(f"{what}: no progress for {STALL_S}s at {done:,.0f}")
        if now - last_said > 5:
            say(f"    {what}: {done:,.0f} of {total:,.0f} decided")
            last_said = now
        await asyncio.sleep(0.1)


class Run:
    """One bench run: its prefix, bank, codec and the workers it starts."""

    def __init__(self, settings: Settings, say: Say) -> None:
        self.settings = settings
        self.say = say
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.codec = Codec(EmbeddedRegistry.load(settings.schemas_dir))
        self.folder = Path(tempfile.mkdtemp(prefix=f"passerelle-{self.prefix}-"))
        self.workers: list[Worker] = []
        self.data_dir: Path | None = None
        """The bench broker's log folder: what the pipeline wrote is measured there."""
        self.footprint: list[Footprint] = []

    def worker(self, app_id: str, guarantee: str) -> Worker:
        worker = Worker(self.settings, app_id, self.folder / app_id, guarantee, ["pipeline"])
        self.workers.append(worker)
        return worker

    async def provision(self, bank_id: str, app_ids: Iterable[str]) -> None:
        wanted = Catalog(self.settings).all([bank_id])
        for app_id in app_ids:
            wanted += Catalog(replace(self.settings, app_id=app_id)).internal()
        await topics.create(self.settings, wanted, say=lambda _: None)

    async def retire(self, bank_id: str) -> None:
        """Delete a finished phase's bank topic, so the next phase's worker (its pattern
        matches every bank) does not read it."""
        admin = kafka.admin(self.settings)
        await admin.start()
        try:
            await admin.delete_topics([catalog.bank_topic_name(bank_id)])
        finally:
            await admin.close()

    def close(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


async def measure_throughput(
    run: Run, records: int, accounts: int, rounds: int
) -> list[Throughput]:
    """`rounds` rounds of baseline, at_least_once, exactly_once, one after the other on
    the same records; each row is the round with the median rate (the machine is shared
    and noisy, so one round alone says little)."""
    bank = f"{run.prefix}-tp"
    apps = {
        (g, r): f"{run.prefix}-{g}-{r}"
        for g in ("at_least_once", "exactly_once")
        for r in range(rounds)
    }
    await run.provision(bank, apps.values())
    bare = Topic(f"{run.prefix}.bare-out", "key", (), run.settings.partitions,
                 run.settings.replication_factor, catalog.deleting(catalog.DAY_MS))  # fmt: skip
    await topics.create(run.settings, [bare], say=lambda _: None)
    pop = population(bank, accounts, seed=1)
    await send_consents(run.settings, run.codec, pop)
    await send_all(run.settings, transactions(run.codec, pop, records))
    run.say(f"  {records:,} transactions of {accounts:,} accounts sent")
    rows: dict[str, list[Throughput]] = {}
    for r in range(rounds):
        run.say(f"  round {r + 1} of {rounds}: bare aiokafka…")
        source = catalog.bank_topic_name(bank)
        rows.setdefault("bare", []).append(
            await passthrough(run.settings, source, bare.name, records, group=f"{bare.name}-{r}")
        )
        free = f"{bare.name}-free-{r}"
        rows.setdefault("free", []).append(
            await passthrough(run.settings, source, bare.name, records, free, waits=False)
        )
        for guarantee in ("at_least_once", "exactly_once"):
            run.say(f"  round {r + 1} of {rounds}: pipeline, {guarantee}…")
            await outcomes_from_now(run.settings, apps[(guarantee, r)])
            worker = run.worker(apps[(guarantee, r)], guarantee)
            worker.start()
            first, at_first = await first_decision(worker)
            cpu = cpu_seconds(worker)
            await until_decided(worker, records, guarantee, run.say)
            seconds, cpu = time.monotonic() - first, cpu_seconds(worker) - cpu
            name = f"pipeline, {guarantee}"
            done = Throughput(name, int(records - at_first), seconds, cpu)
            rows.setdefault(name, []).append(done)
            worker.stop()
    if run.data_dir is not None:  # before the bank's topic goes
        run.footprint = footprint(run.data_dir, bank, apps, records)
    await run.retire(bank)
    return [sorted(runs, key=lambda t: t.rate)[len(runs) // 2] for runs in rows.values()]


async def measure_latency(
    run: Run,
    guarantee: str,
    rates: Iterable[float],
    saturation: int,
    accounts: int,
    capacity: float = 0.0,
) -> list[Latency]:
    """p50/p95/p99 bank → notification at each fixed rate, at SHARES of `capacity` (the
    run's own measured rate for this guarantee: comparable across machines), then at
    saturation."""
    bank = f"{run.prefix}-lat-{'alo' if guarantee == 'at_least_once' else 'eos'}"
    app_id = f"{run.prefix}-lat-{guarantee}"
    await run.provision(bank, [app_id])
    pop = population(bank, accounts, seed=2)
    await send_consents(run.settings, run.codec, pop)
    await outcomes_from_now(run.settings, app_id)
    worker = run.worker(app_id, guarantee)
    worker.start()
    await until_ready(worker, timeout_s=300)
    # A messaging worker tuned for latency: a fetch returns as soon as there is data.
    reader = kafka.consumer(
        run.settings, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await reader.start()
    tps = [TopicPartition(catalog.NOTIFICATIONS, p) for p in range(run.settings.partitions)]
    reader.assign(tps)
    await reader.seek_to_end(*tps)
    producer = kafka.producer(run.settings, linger_ms=1)
    await producer.start()
    out = []
    n = 0

    async def phase(rate: float, count: int) -> tuple[float, list[float]]:
        """Offer the next `count` transactions at `rate`: the rate achieved, the latencies."""
        nonlocal n
        reading = asyncio.create_task(collect(reader, run.codec, bank, pop.notified(n, count)))
        seconds = await offer(run, producer, pop, n, count, rate)
        n += count
        return count / seconds, await reading

    try:
        rates = list(rates)
        run.say(f"  latency, {guarantee}, warm-up at {rates[0]:,.0f} ev/s…")
        await phase(rates[0], int(rates[0] * WARMUP_SECONDS))  # not reported
        offered = [(r, 0.0) for r in rates] + [(s * capacity, s) for s in SHARES if capacity]
        for rate, share in [*offered, (0.0, 0.0)]:
            count = int(rate * LATENCY_SECONDS) if rate else saturation
            run.say(f"  latency, {guarantee}, {f'{rate:,.0f} ev/s' if rate else 'saturation'}…")
            achieved, latencies = await phase(rate, count)
            out.append(replace(_latency(guarantee, rate, achieved, latencies), share=share))
    finally:
        await producer.stop()
        await reader.stop()
        worker.stop()
    await run.retire(bank)
    return out


async def offer(
    run: Run, producer: Any, pop: Population, first: int, count: int, rate: float
) -> float:
    """Send `count` transactions at `rate` per second (0: as fast as possible), each
    booked at the moment it is sent; returns the seconds it took."""
    topic = catalog.bank_topic_name(pop.bank.bank_id)
    started = time.monotonic()
    pending = []
    for i in range(count):
        if rate:
            due = started + i / rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
        account = pop.accounts[(first + i) % len(pop.accounts)]
        value = transaction(run.codec, account, first + i, int(time.time() * 1000))
        pending.append(await producer.send(topic, value, account.account_id.encode()))
    await asyncio.gather(*pending)
    return time.monotonic() - started


async def collect(
    reader: Any, codec: Codec, bank: str, expected: int, timeout_s: float = 120
) -> list[float]:
    """End-to-end latencies (ms) of this bank's TRANSACTION notifications, as they arrive."""
    latencies: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(latencies) < expected and time.monotonic() < deadline:
        batches = await reader.getmany(timeout_ms=200)
        arrived = time.time() * 1000
        for records in batches.values():
            for r in records:
                n = codec.decode(model.NOTIFICATION, r.value)
                if n["bank_id"] == bank and n["kind"] == "TRANSACTION":
                    latencies.append(arrived - n["occurred_at"])
    if len(latencies) < expected:
        raise PasserelleError(f"{len(latencies)} of {expected} notifications in {timeout_s}s")
    return latencies


def _latency(guarantee: str, rate: float, achieved: float, ms: list[float]) -> Latency:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return Latency(guarantee, rate, achieved, len(ms), q[49], q[94], q[98])
