"""Guarantees under faults, on three brokers (RF 3, min.insync.replicas 2), with two
pipeline workers as separate processes (`make test-faults`; not in `make test`).

Each scenario: 30 000 seeded events of three banks (about 80 % of accounts
consenting, revocations mid-stream) written before the workers start; faults
injected at measured progress (the ingest group's committed share of the bank
records); then, after quiesce, the pass rule: the independent checker finds no
missing, duplicate or leaked output and agrees with every decision; every bank
reconciles; no hanging transaction on any broker; last stable offset = high
watermark on every output partition; every group committed past its input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from streams import catalog, kafka
from streams.catalog import Catalog
from streams.codec import Codec
from streams.settings import LocalKafkaSettings, Settings
from streams.tools import checker, kafkacli, localkafka, reconcile, simulate, topics
from tests.conftest import unique_bank
from tests.integration.harness import Worker, caught_up, end_offsets, group_offsets, until_ready

EVENTS = 60_000
GUARANTEE = "exactly_once"


@dataclass
class Run:
    cluster: localkafka.Cluster
    settings: Settings
    codec: Codec
    banks: list[str]
    total: int
    workers: list[Worker]

    @property
    def app_id(self) -> str:
        return self.settings.app_id

    async def progress(self) -> float:
        """The share of the work done: the slower of ingest (bank records committed)
        and accounts (account-stream records committed, of those written so far)."""
        ingested = 0
        for bank in self.banks:
            offsets = await group_offsets(
                self.settings, f"{self.app_id}-ingest", catalog.bank_topic_name(bank)
            )
            ingested += sum(offsets.values())
        stream = Catalog(self.settings).account_stream().name
        decided = sum(
            (await group_offsets(self.settings, f"{self.app_id}-accounts", stream)).values()
        )
        written = await end_offsets(self.settings, stream)
        return min(ingested / self.total, decided / max(written, 1))

    async def until_progress(self, share: float, timeout_s: float = 180) -> float:
        deadline = time.monotonic() + timeout_s
        while (now := await self.progress()) < share:
            assert time.monotonic() < deadline, f"stuck at {now:.0%}"
            await asyncio.sleep(0.05)
        return now


async def start(
    cluster: localkafka.Cluster, codec: Codec, tmp_path: Path, workers: list[Worker], seed: int
) -> Run:
    settings = dataclasses.replace(
        cluster.client_settings(),
        app_id=f"faults-{uuid.uuid4().hex[:8]}",
        replication_factor=3,
    )
    banks = [
        simulate.Bank(unique_bank(), "fr-FR", "Europe/Paris", "EUR", "p1"),
        simulate.Bank(unique_bank(), "fr-FR", "Europe/Paris", "EUR", "p2"),
        simulate.Bank(unique_bank(), "en-GB", "Europe/London", "GBP", "p3"),
    ]
    ids = [b.bank_id for b in banks]
    await topics.create(settings, Catalog(settings).all(ids), say=lambda _: None)
    feed = await simulate.run(
        settings, codec, EVENTS, rate=0, banks=banks, seed=seed, say=lambda _: None,
        progress=False,
    )  # fmt: skip
    total = sum(feed.sent.values())
    run = Run(cluster, settings, codec, ids, total, [])
    for n in (1, 2):
        worker = Worker(settings, settings.app_id, tmp_path / f"w{n}", GUARANTEE, ["pipeline"])
        worker.env["PASSERELLE_REPLICATION"] = "3"
        worker.log = tmp_path / f"w{n}.log"
        workers.append(worker)
        run.workers.append(worker)
        worker.start()
    return run


async def quiesce_and_check(run: Run) -> None:
    """The pass rule, after every event is accounted for."""
    counts = await reconcile.wait_balanced(run.settings, run.codec, run.banks, 300)
    stream = Catalog(run.settings).account_stream().name
    deadline = time.monotonic() + 120
    while not await caught_up(run.settings, f"{run.app_id}-accounts", stream):
        assert time.monotonic() < deadline, "the accounts group never caught up"
        await asyncio.sleep(0.5)
    for worker in run.workers:
        assert worker.stop() == 0, f"unclean stop; see {worker.log}"
    for bank in run.banks:
        assert await caught_up(run.settings, f"{run.app_id}-ingest", catalog.bank_topic_name(bank))

    report = await checker.check_pipeline(run.settings, run.codec, run.app_id, run.banks)
    print(report.table())
    for bank, c in counts.items():
        print(c.line(bank))
    assert all(c.balanced for c in counts.values())
    assert report.exact, report.table()
    assert report.notifications_seen > 0

    for node in run.cluster.nodes:
        out = await asyncio.to_thread(
            kafkacli.run, run.settings, kafkacli.TRANSACTIONS_COMMAND,
            "find-hanging", "--broker-id", str(node.node_id),
        )  # fmt: skip
        assert "No hanging transactions" in out or len(out.strip().splitlines()) <= 1, out

    outputs = [catalog.NOTIFICATIONS, catalog.AUDIT, catalog.DLQ, stream,
               Catalog(run.settings).changelog("accounts").name]  # fmt: skip
    stable = kafka.consumer(run.settings, group_id=None)
    watermark = kafka.consumer(run.settings, group_id=None, isolation_level="read_uncommitted")
    await stable.start()
    await watermark.start()
    try:
        tps = [TopicPartition(t, p) for t in outputs for p in range(run.settings.partitions)]
        lso, hw = await stable.end_offsets(tps), await watermark.end_offsets(tps)
        assert lso == hw, {tp: (lso[tp], hw[tp]) for tp in tps if lso[tp] != hw[tp]}
    finally:
        await stable.stop()
        await watermark.stop()


@pytest.mark.timeout(900)
async def test_a_worker_killed_three_times_loses_and_repeats_nothing(
    cluster: localkafka.Cluster, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    run = await start(cluster, codec, tmp_path, workers, seed=51)
    victim = run.workers[0]
    for share in (0.25, 0.45, 0.65):
        at = await run.until_progress(share)
        victim.kill()
        print(f"kill -9 at {at:.0%}")
        assert 0.2 <= at <= 0.8
        victim.start()  # at once: the next kill may come before it is back
    print(f"last crash → ready in {await until_ready(victim):.1f}s")
    await quiesce_and_check(run)


@pytest.mark.timeout(900)
async def test_a_rolling_sigterm_restart_loses_and_repeats_nothing(
    cluster: localkafka.Cluster, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    run = await start(cluster, codec, tmp_path, workers, seed=52)
    for worker, share in zip(run.workers, (0.3, 0.6), strict=True):
        at = await run.until_progress(share)
        assert worker.stop() == 0, f"unclean stop; see {worker.log}"
        print(f"SIGTERM at {at:.0%}")
        worker.start()
        print(f"restart → ready in {await until_ready(worker):.1f}s")
    await quiesce_and_check(run)


@pytest.mark.timeout(900)
async def test_a_broker_killed_then_each_bounced_loses_and_repeats_nothing(
    cluster: localkafka.Cluster,
    cluster_settings: LocalKafkaSettings,
    codec: Codec,
    tmp_path: Path,
    workers: list[Worker],
) -> None:
    run = await start(cluster, codec, tmp_path, workers, seed=53)
    at = await run.until_progress(0.3)
    victim = cluster.nodes[1]
    localkafka.kill(victim, signal.SIGKILL)
    print(f"kill -9 broker {victim.node_id} at {at:.0%}")
    await asyncio.sleep(5)
    await asyncio.to_thread(localkafka.up, cluster, cluster_settings, lambda _: None)
    at = await run.until_progress(0.5)
    print(f"broker {victim.node_id} back; bouncing each broker from {at:.0%}")
    for node in cluster.nodes:
        pid = localkafka.kill(node, signal.SIGTERM)
        while node.pid() == pid:
            await asyncio.sleep(0.2)
        await asyncio.to_thread(localkafka.up, cluster, cluster_settings, lambda _: None)
    await quiesce_and_check(run)
