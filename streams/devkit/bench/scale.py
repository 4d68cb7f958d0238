"""`make bench-scale`: what each added worker costs, on three local brokers.

A fixed offered load (transactions per second, booked when sent) runs for a
fixed time against 1, 2 and 4 workers of one app (separate processes, as
deployed), with k = 0 and k = 1 standby copies. On a two-core machine four
workers cannot add throughput; what must stay flat as workers are added is the
cost per transaction: the workers' CPU time together (`/proc`), and the
changelog records the standby copies read. Each row also says the decisions a
second, p99 bank → notification, and RSS and disk per worker.

Then a failover with k = 1: two workers under the same load, the one owning
the first partition is killed (`kill -9`); the row says how long until the
survivor decides that partition's transactions again and how many changelog
records it restored to take over (a warm copy: only the tail).

Reported, never asserted: `bench/results/scale.json`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, astuple, dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from streams import catalog, kafka
from streams.devkit import localkafka
from streams.devkit.bench.feed import outcomes_from_now, population, send_consents
from streams.devkit.bench.measure import Run, Say, collect, cpu_seconds, decided, offer, rss_mib
from streams.devkit.bench.report import RESULTS
from streams.devkit.workerproc import Worker, scraped, until_ready
from streams.settings import LocalKafkaSettings, Settings

SCALE_PORT = 19492  # nodes on 19492, 19502, 19512 (the fault suite: 19292…)
# Before each measured phase: the workers' CPU over IDLE_S with nothing offered (after
# DRAIN_S), then a warm-up at the offered rate and a pause for it to drain.
WARMUP_S = 10
DRAIN_S = 3
IDLE_S = 10
# Before the first measured phase, a phase not reported. Four one-worker phases in a
# row on fresh brokers (k = 1, 0, 1, 0; k made no difference) cost 52.5, 76.2, 79.6
# and 82.8 CPU-s per 100 000 decided, with p50 3 256, 1 799, 1 620 and 1 575 ms: the
# fresh brokers answered slower (their JVMs not yet warm, we think), so the first
# worker made bigger batches and fewer transactions (81, 159, 170, 185 per 1 000).
# One worker, always measured first, looked cheaper than it is.
WARM_BROKERS_S = 60
# The failover's load runs this long, and the kill comes this far into it.
FAILOVER_S = 30
KILL_AFTER_S = 5
STANDBY = "passerelle_standby_records_total"
TRANSACTIONS = "passerelle_transactions_total"
RESTORED = "passerelle_restored_records_total"


@dataclass(frozen=True)
class Scale:
    workers: int
    replicas: int
    offered: float
    decided: int
    seconds: float
    cpu_s: float
    """All the workers' CPU time together over the offered span."""
    standby_records: int
    """Changelog records the standby copies applied over the span (all workers)."""
    p99_ms: float
    rss_mib: tuple[float, ...]
    disk_mib: tuple[float, ...]
    idle_cpu: float = 0.0
    """The workers' CPU seconds a second together with no load (polls, heartbeats,
    ticks, gauges): what each worker costs before it decides anything. Not subtracted
    from the loaded figure: under load the same polls return records instead."""
    idle_transactions: float = 0.0
    """The workers' Kafka transactions a second together with no load: mostly the ticks'
    (one per partition a second, whatever the number of workers)."""
    transactions: int = 0
    """Kafka transactions the workers ended over the offered span (all workers)."""

    @property
    def cpu_s_per_100k(self) -> float:
        return self.cpu_s / self.decided * 100_000 if self.decided else 0.0

    @property
    def standby_per_1k(self) -> float:
        return self.standby_records / self.decided * 1000 if self.decided else 0.0

    @property
    def transactions_per_1k(self) -> float:
        return self.transactions / self.decided * 1000 if self.decided else 0.0


@dataclass(frozen=True)
class Failover:
    ready_s: float
    """The longest bank → notification wait of the transactions sent around the kill:
    the group's session timeout, the takeover and the backlog it left."""
    restored: int
    """Changelog records the survivor read to open the partitions it took over."""
    changelog: int
    """Those partitions' changelog records, for scale: what a cold restore reads."""


def three_brokers() -> tuple[localkafka.Cluster, LocalKafkaSettings]:
    """Three fresh nodes of the bench's own (not `make kafka-cluster-up`'s, nor the
    fault suite's), so every worker reads exactly the bench's records."""
    local = replace(
        LocalKafkaSettings.from_env(),
        cluster_port=SCALE_PORT,
        cluster_run_dir=Path(".run/kafka-scale"),
    )
    return localkafka.fresh(localkafka.Cluster.three(local)), local


async def run_scale(
    settings: Settings,
    counts: tuple[int, ...] = (1, 2, 4),
    replicas: tuple[int, ...] = (0, 1),
    rate: float = 400,
    seconds: float = 30,
    out: Path = RESULTS,
    say: Say = print,
) -> tuple[list[Scale], Failover]:
    cluster, local = three_brokers()
    await asyncio.to_thread(localkafka.up, cluster, local, say)
    settings = replace(
        settings, bootstrap_servers=cluster.bootstrap, replication_factor=3, partitions=8
    )
    bench = Run(settings, say)
    rows: list[Scale] = []
    try:
        say(f"scale: warming the brokers up, 1 worker, {rate:,.0f} tx/s for {WARM_BROKERS_S} s…")
        await _one(bench, 1, 0, rate, WARM_BROKERS_S, "warm")  # not reported
        for k in replicas:
            for n in counts:
                say(f"scale: {n} worker(s), k = {k}, {rate:,.0f} tx/s for {seconds:.0f} s…")
                rows.append(await _one(bench, n, k, rate, seconds))
        say("scale: failover, 2 workers, k = 1…")
        failover = await _failover(bench, rate)
    finally:
        bench.close()
        await asyncio.to_thread(localkafka.down, cluster, say)
    say("\n" + table(rows, failover))
    out.mkdir(parents=True, exist_ok=True)
    data = {"rows": [asdict(r) for r in rows], "failover": asdict(failover), "at": time.time()}
    (out / "scale.json").write_text(json.dumps(data, indent=2) + "\n")
    return rows, failover


async def _start(bench: Run, app_id: str, n: int, k: int) -> list[Worker]:
    await outcomes_from_now(bench.settings, app_id)
    workers = []
    for i in range(n):
        worker = Worker(
            bench.settings, app_id, bench.folder / app_id / f"w{i}", "exactly_once", ["pipeline"]
        )
        worker.env["PASSERELLE_STANDBY_REPLICAS"] = str(k)
        bench.workers.append(worker)
        workers.append(worker)
        worker.start()
    for worker in workers:
        await until_ready(worker, timeout_s=300)
    return workers


async def _one(bench: Run, n: int, k: int, rate: float, seconds: float, tag: str = "") -> Scale:
    """Measure the workers idle, warm them up, then measure them under the offered load.
    Each phase has its own app and bank (`tag`): the same ids decided again are repeats."""
    app_id = bank = f"{bench.prefix}-{tag}n{n}-k{k}"
    await bench.provision(bank, [app_id])
    pop = population(bank, 2_000, seed=3)
    await send_consents(bench.settings, bench.codec, pop)
    workers = await _start(bench, app_id, n, k)
    reader, producer = await _clients(bench.settings)
    try:
        await asyncio.sleep(DRAIN_S)  # ready, and nothing offered yet: idle
        idle = _totals(workers)
        await asyncio.sleep(IDLE_S)
        idled = _totals(workers) - idle
        warm = int(rate * WARMUP_S)  # first batches, metadata, copies catching up: not measured
        await offer(bench, producer, pop, 0, warm, rate)
        await asyncio.sleep(DRAIN_S)
        await reader.seek_to_end(*reader.assignment())  # the warm-up's notifications: skipped
        before = _totals(workers)
        count = int(rate * seconds)
        expected = pop.notified(warm, count)
        reading = asyncio.create_task(collect(reader, bench.codec, bank, expected))
        took = await offer(bench, producer, pop, warm, count, rate)
        latencies = await reading
        span = _totals(workers) - before
        p99 = sorted(latencies)[int(0.99 * (len(latencies) - 1))]
        return Scale(
            workers=n,
            replicas=k,
            offered=rate,
            decided=int(span.decided),
            seconds=took,
            cpu_s=span.cpu_s,
            standby_records=int(span.standby),
            p99_ms=p99,
            rss_mib=tuple(round(rss_mib(w), 1) for w in workers),
            disk_mib=tuple(round(_mib(bench.folder / app_id / f"w{i}"), 1) for i in range(n)),
            idle_cpu=round(idled.cpu_s / IDLE_S, 3),
            idle_transactions=round(idled.transactions / IDLE_S, 1),
            transactions=int(span.transactions),
        )
    finally:
        await producer.stop()
        await reader.stop()
        for worker in workers:
            worker.stop()
        await bench.retire(bank)


@dataclass(frozen=True)
class Totals:
    """The workers' counters added up (`/proc` and their /metrics pages)."""

    cpu_s: float
    decided: float
    standby: float
    transactions: float

    def __sub__(self, then: Totals) -> Totals:
        return Totals(*(a - b for a, b in zip(astuple(self), astuple(then), strict=True)))


def _totals(workers: list[Worker]) -> Totals:
    def one(w: Worker) -> tuple[float, ...]:
        return cpu_seconds(w), decided(w), scraped(w, STANDBY), scraped(w, TRANSACTIONS)

    return Totals(*(sum(column) for column in zip(*map(one, workers), strict=True)))


async def _failover(bench: Run, rate: float) -> Failover:
    """Two workers, k = 1, under load: kill -9 one; the longest a transaction sent
    around the kill waited for its notification is the takeover, as a customer sees it."""
    app_id = bank = f"{bench.prefix}-failover"
    await bench.provision(bank, [app_id])
    pop = population(bank, 2_000, seed=4)
    await send_consents(bench.settings, bench.codec, pop)
    victim, survivor = await _start(bench, app_id, 2, 1)
    reader, producer = await _clients(bench.settings)
    try:
        warm = int(rate * 10)  # state for the copies to follow
        await offer(bench, producer, pop, 0, warm, rate)
        await asyncio.sleep(3)
        restored_before = scraped(survivor, RESTORED)
        count = int(rate * FAILOVER_S)
        expected = pop.notified(warm, count)
        reading = asyncio.create_task(collect(reader, bench.codec, bank, expected, timeout_s=180))
        feeding = asyncio.create_task(offer(bench, producer, pop, warm, count, rate))
        await asyncio.sleep(KILL_AFTER_S)
        victim.kill()
        await feeding
        latencies = await reading
        restored = int(scraped(survivor, RESTORED) - restored_before)
        changelog = await _records(bench.settings, f"{app_id}.accounts-changelog")
        return Failover(round(max(latencies) / 1000, 2), restored, changelog)
    finally:
        await producer.stop()
        await reader.stop()
        survivor.stop()
        await bench.retire(bank)


async def _clients(settings: Settings) -> tuple[Any, Any]:
    """A notification reader at the topic's end, and a producer tuned for latency."""
    reader = kafka.consumer(settings, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10)
    await reader.start()
    tps = [TopicPartition(catalog.NOTIFICATIONS, p) for p in range(settings.partitions)]
    reader.assign(tps)
    await reader.seek_to_end(*tps)
    producer = kafka.producer(settings, linger_ms=1)
    await producer.start()
    return reader, producer


async def _records(settings: Settings, topic: str) -> int:
    reader = kafka.consumer(settings, group_id=None)
    await reader.start()
    try:
        tps = await kafka.partitions_of(reader, topic)
        ends = await reader.end_offsets(tps)
        starts = await reader.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await reader.stop()


def _mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def table(rows: list[Scale], failover: Failover) -> str:
    lines = [
        "workers  k  offered/s  decided/s  idle CPU  idle txn/s  CPU-s per 100k (vs 1)"
        "  txn per 1k  standby rec per 1k  p99 ms  RSS MiB per worker  disk MiB per worker"
    ]
    one = {r.replicas: r for r in rows if r.workers == 1}
    for r in rows:
        base = one.get(r.replicas, r)
        total = r.cpu_s_per_100k / base.cpu_s_per_100k if base.cpu_s_per_100k else 0.0
        lines.append(
            f"{r.workers:>7}  {r.replicas}  {r.offered:>9,.0f}  {r.decided / r.seconds:>9,.0f}"
            f"  {r.idle_cpu:>7.0%}  {r.idle_transactions:>10,.1f}"
            f"  {r.cpu_s_per_100k:>13,.1f} ({total:.2f}×)  {r.transactions_per_1k:>10,.0f}"
            f"  {r.standby_per_1k:>18,.0f}  {r.p99_ms:>6,.0f}"
            f"  {' '.join(f'{m:.0f}' for m in r.rss_mib):>18}"
            f"  {' '.join(f'{m:.1f}' for m in r.disk_mib)}"
        )
    lines.append(
        f"failover (2 workers, k = 1, kill -9 under load): longest wait "
        f"{failover.ready_s:.1f} s, {failover.restored:,} changelog records restored "
        f"(of {failover.changelog:,} in the changelog)"
    )
    return "\n".join(lines)
