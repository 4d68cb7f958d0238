"""`make bench`: the pipeline against raw Kafka, in one run, on one broker.

Three measures, each against something measured in the same run:

1. Throughput. The baseline is the limit for Python: a bare aiokafka loop
   (consume, produce each record without awaiting it, wait for the batch's
   acks, commit) passing the same framed Avro transactions through. The
   pipeline is the real worker (`passerelle worker pipeline`, its own
   process, metrics on, ticks on) doing the full path on the same records:
   ingest, consent gate, accounts, notifications, audit; about 80 % of
   accounts consent. Each is timed from ready to its last record; the result
   is a ratio. Beside the baseline, the same loop without its per-poll waits
   (no acks awaited, one commit at the end): what the client does unhindered,
   so the reference is clear. The worker's CPU time per transaction is read
   from `/proc`, and what the pipelines left on the broker's disk, topic by
   topic, per transaction (`footprint.py`: the capacity model's inputs).
2. Latency. Transactions offered at fixed rates (booked_at = the moment sent),
   and at 10, 30 and 60 % of the capacity this run measured (comparable across
   machines), notifications read read_committed as a messaging worker would:
   end-to-end p50/p95/p99 per rate, and at saturation.
3. State. A worker's RSS and RocksDB folder after N accounts, and how long a
   worker with an empty folder takes to be ready again (changelog restore).
4. Delivery. One `passerelle deliver` worker against a local Send API that
   answers at once, then 50 ms later: deliveries a second, and their ratio
   (how much of the API's latency its concurrency hides).

Output: a table, `bench/results/latest.json` and `bench/results/latest.png`.
Speed is reported, never asserted.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from streams.devkit import localkafka
from streams.devkit.bench.delivery import measure_delivery
from streams.devkit.bench.measure import (
    Run,
    Say,
    measure_latency,
    measure_throughput,
)
from streams.devkit.bench.report import RESULTS, Report, write
from streams.devkit.bench.state import measure_state
from streams.settings import LocalKafkaSettings, Settings

__all__ = ["BENCH_PORT", "Report", "own_broker", "run"]

BENCH_PORT = 9492


def own_broker() -> tuple[localkafka.Cluster, LocalKafkaSettings]:
    """A fresh single node for the bench alone: nothing of earlier runs or other work
    on it, so every worker reads exactly the bench's records."""
    local = replace(
        LocalKafkaSettings.from_env(), port=BENCH_PORT, run_dir=Path(".run/kafka-bench")
    )
    return localkafka.fresh(localkafka.Cluster.single(local)), local


async def run(
    settings: Settings,
    records: int = 50_000,
    rates: tuple[float, ...] = (500, 1000, 2000),
    sizes: tuple[int, ...] = (10_000, 100_000),
    rounds: int = 3,
    deliveries: int = 4_000,
    out: Path = RESULTS,
    say: Say = print,
) -> Report:
    cluster, local = own_broker()
    await asyncio.to_thread(localkafka.up, cluster, local, say)
    settings = replace(settings, bootstrap_servers=cluster.bootstrap)
    bench = Run(settings, say)
    bench.data_dir = cluster.nodes[0].dir / "data"
    report = Report(settings.bootstrap_servers, settings.partitions, records, rounds)
    say(f"bench on {settings.bootstrap_servers}, {settings.partitions} partitions, {bench.prefix}")
    try:
        say("1/4 throughput")
        report.throughput = await measure_throughput(bench, records, 2_000, rounds)
        report.footprint = bench.footprint
        say("2/4 latency")
        for guarantee in ("at_least_once", "exactly_once"):
            capacity = report.throughput_of(f"pipeline, {guarantee}")
            report.latency += await measure_latency(
                bench, guarantee, rates, 20_000, 2_000, capacity
            )
        say("3/4 state")
        for size in sizes:
            # Each size on a fresh broker: consents.v1 is every bank's, and on the same
            # broker a state phase's worker held every earlier phase's consents too (at
            # 1 M after a 1 M run: 2.4 M changelog records, not 1.6 M; restored in 29 s,
            # not 14).
            await asyncio.to_thread(localkafka.up, localkafka.fresh(cluster), local, say)
            report.state.append(await measure_state(bench, size))
        say("4/4 delivery")
        report.delivery = await measure_delivery(bench, deliveries)
    finally:
        bench.close()
        await asyncio.to_thread(localkafka.down, cluster, say)
    say("\n" + report.table())
    write(report, out)
    say(f"\nwritten: {out / 'latest.json'}, {out / 'latest.png'}")
    return report
