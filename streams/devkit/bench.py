"""`make bench`: the pipeline against raw Kafka, in one run, on one broker.

Three measures, each against something measured in the same run:

1. Throughput. The baseline is the limit for Python: a bare aiokafka loop
   (consume, produce each record without awaiting it, wait for the batch's
   acks, commit) passing the same framed Avro transactions through. The
   pipeline is the real worker (`passerelle worker pipeline`, its own
   process, metrics on, ticks on) doing the full path on the same records:
   ingest, consent gate, accounts, notifications, audit; about 80 % of
   accounts consent. Each is timed from ready to its last record; the result
   is a ratio.
2. Latency. Transactions offered at fixed rates (booked_at = the moment sent),
   notifications read read_committed as a messaging worker would: end-to-end
   p50/p95/p99 per rate, and at saturation.
3. State. A worker's RSS and RocksDB folder after N accounts, and how long a
   worker with an empty folder takes to be ready again (changelog restore).

Output: a table, `bench/results/latest.json` and `bench/results/latest.png`.
Speed is reported, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from streams import catalog, kafka, model
from streams.catalog import Catalog, Topic
from streams.codec import Codec, EmbeddedRegistry
from streams.devkit import localkafka
from streams.devkit.workerproc import Worker, metric_sum, metrics_page, scraped, until_ready
from streams.errors import PasserelleError
from streams.settings import LocalKafkaSettings, Settings
from streams.tools import simulate, topics

Say = Callable[[str], None]
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
# A run that makes no progress for this long has failed; say so instead of hanging.
STALL_S = 90
CONSENTING = 0.8
LATENCY_SECONDS = 8.0
WORKER_ARGS: list[str] = []


@dataclass(frozen=True)
class Throughput:
    name: str
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


@dataclass(frozen=True)
class Latency:
    guarantee: str
    offered: float  # events per second; 0 for saturation
    achieved: float
    notifications: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class State:
    accounts: int
    rss_mib: float
    disk_mib: float
    changelog_records: int
    restore_s: float


@dataclass
class Report:
    broker: str
    partitions: int
    records: int
    rounds: int
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    state: list[State] = field(default_factory=list)

    def ratio(self, name: str) -> float:
        base = self.throughput[0].rate
        return next(t.rate for t in self.throughput if t.name == name) / base

    def table(self) -> str:
        base = self.throughput[0].rate
        title = f"throughput (median of {self.rounds})"
        lines = [f"{title:34} {'records':>9} {'seconds':>8} {'rec/s':>9} {'ratio':>6}"]
        for t in self.throughput:
            ratio = t.rate / base
            lines.append(
                f"{t.name:34} {t.records:>9} {t.seconds:>8.2f} {t.rate:>9,.0f} {ratio:>6.3f}"
            )
        lines.append(f"\n{'latency (bank → notification)':34} {'offered':>8} {'achieved':>9} "
                     f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")  # fmt: skip
        for r in self.latency:
            offered = f"{r.offered:,.0f}/s" if r.offered else "max"
            lines.append(
                f"{r.guarantee:34} {offered:>8} {r.achieved:>8,.0f}/s "
                f"{r.p50_ms:>8.0f} {r.p95_ms:>8.0f} {r.p99_ms:>8.0f}"
            )
        lines.append(
            f"\n{'state':34} {'RSS MiB':>8} {'disk MiB':>9} {'changelog':>10} {'restore s':>9}"
        )
        for s in self.state:
            lines.append(
                f"{f'{s.accounts:,} accounts':34} {s.rss_mib:>8.0f} {s.disk_mib:>9.1f} "
                f"{s.changelog_records:>10,} {s.restore_s:>9.1f}"
            )
        return "\n".join(lines)


# -- the feed ------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    bank: simulate.Bank
    accounts: list[simulate.Account]

    @property
    def consenting(self) -> list[simulate.Account]:
        return [a for a in self.accounts if a.consent is not None]


def population(bank_id: str, size: int, seed: int) -> Population:
    rng = random.Random(seed)
    bank = simulate.Bank(bank_id, "fr-FR", "Europe/Paris", "EUR", "105000000000009")
    accounts = simulate.accounts(rng, size, [bank])
    now = int(time.time() * 1000)
    for account in accounts:
        if rng.random() < CONSENTING:
            account.consent = simulate.consent_for(rng, account, now)
            account.consent["permissions"] = sorted(
                {"TRANSACTIONS", *account.consent["permissions"]}
            )
    return Population(bank, accounts)


def transaction(codec: Codec, account: simulate.Account, n: int, booked_at: int) -> bytes:
    merchant, mcc, typical = simulate.MERCHANTS[n % len(simulate.MERCHANTS)]
    account.balance -= typical
    record: model.Transaction = {
        "transaction_id": f"bench-{account.account_id[-10:]}-{n}",
        "bank_id": account.bank.bank_id,
        "account_id": account.account_id,
        "status": "BOOKED",
        "pending_transaction_id": None,
        "reversed_transaction_id": None,
        "amount_minor": -typical,
        "currency": account.bank.currency,
        "booked_at": booked_at,
        "merchant_name": merchant,
        "mcc": mcc,
        "description": None,
        "balance_after_minor": account.balance,
        "channel": "CARD",
    }
    return codec.encode(model.TRANSACTION, record)


async def send_all(settings: Settings, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Produce fast: no await per record, acks gathered in chunks."""
    producer = kafka.producer(settings, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def send_consents(settings: Settings, codec: Codec, pop: Population) -> int:
    return await send_all(
        settings,
        (
            (catalog.CONSENTS, f"{a.bank.bank_id}:{a.account_id}".encode(),
             codec.encode(model.CONSENT, a.consent or {}))
            for a in pop.consenting
        ),
    )  # fmt: skip


def transactions(codec: Codec, pop: Population, count: int) -> Iterable[tuple[str, bytes, bytes]]:
    topic = catalog.bank_topic_name(pop.bank.bank_id)
    now = int(time.time() * 1000)
    for n in range(count):
        account = pop.accounts[n % len(pop.accounts)]
        yield topic, account.account_id.encode(), transaction(codec, account, n, now)


# -- measuring -------------------------------------------------------------------


async def passthrough(
    settings: Settings, source: str, target: str, records: int, group: str
) -> Throughput:
    """Bare aiokafka: consume → produce without awaiting each send → commit per batch."""
    consumer = kafka.consumer(
        settings, source, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = kafka.producer(settings, linger_ms=0, max_batch_size=kafka.BATCH_BYTES)
    await producer.start()
    await consumer.start()
    done, started = 0, 0.0
    try:
        while done < records:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not started and batches:
                started = time.monotonic()
            futures = [
                await producer.send(target, r.value, r.key) for rs in batches.values() for r in rs
            ]
            await asyncio.gather(*futures)
            if batches:
                await consumer.commit()
            done += len(futures)
        return Throughput("bare aiokafka passthrough", done, time.monotonic() - started)
    finally:
        await consumer.stop()
        await producer.stop()


DECISIONS = "passerelle_decisions_total"


def decided(worker: Worker) -> float:
    """Transactions the worker has decided (its broker carries one bank at a time)."""
    return scraped(worker, DECISIONS)


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

    def worker(self, app_id: str, guarantee: str) -> Worker:
        worker = Worker(
            self.settings, app_id, self.folder / app_id, guarantee, ["pipeline", *WORKER_ARGS]
        )
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
        for guarantee in ("at_least_once", "exactly_once"):
            run.say(f"  round {r + 1} of {rounds}: pipeline, {guarantee}…")
            worker = run.worker(apps[(guarantee, r)], guarantee)
            worker.start()
            first, at_first = await first_decision(worker)
            await until_decided(worker, records, guarantee, run.say)
            seconds = time.monotonic() - first
            name = f"pipeline, {guarantee}"
            rows.setdefault(name, []).append(Throughput(name, int(records - at_first), seconds))
            worker.stop()
    await run.retire(bank)
    return [sorted(runs, key=lambda t: t.rate)[len(runs) // 2] for runs in rows.values()]


async def measure_latency(
    run: Run, guarantee: str, rates: Iterable[float], saturation: int, accounts: int
) -> list[Latency]:
    bank = f"{run.prefix}-lat-{'alo' if guarantee == 'at_least_once' else 'eos'}"
    app_id = f"{run.prefix}-lat-{guarantee}"
    await run.provision(bank, [app_id])
    pop = population(bank, accounts, seed=2)
    await send_consents(run.settings, run.codec, pop)
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
    try:
        n = 0
        for rate in [*rates, 0.0]:
            count = int(rate * LATENCY_SECONDS) if rate else saturation
            run.say(f"  latency, {guarantee}, {f'{rate:,.0f} ev/s' if rate else 'saturation'}…")
            expected = sum(
                pop.accounts[(n + i) % len(pop.accounts)].consent is not None for i in range(count)
            )
            reading = asyncio.create_task(collect(reader, run.codec, bank, expected))
            seconds = await offer(run, producer, pop, n, count, rate)
            n += count
            out.append(_latency(guarantee, rate, count / seconds, await reading))
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
    return State(accounts, rss, disk, records, restore)


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


# -- the whole bench ---------------------------------------------------------------


BENCH_PORT = 9492


def own_broker() -> tuple[localkafka.Cluster, LocalKafkaSettings]:
    """A fresh single node for the bench alone: nothing of earlier runs or other work
    on it, so every worker reads exactly the bench's records."""
    local = replace(
        LocalKafkaSettings.from_env(), port=BENCH_PORT, run_dir=Path(".run/kafka-bench")
    )
    cluster = localkafka.Cluster.single(local)
    if any(pid for _, pid in localkafka.status(cluster)):
        localkafka.down(cluster, say=lambda _: None)
    shutil.rmtree(cluster.dir, ignore_errors=True)
    return cluster, local


async def run(
    settings: Settings,
    records: int = 50_000,
    rates: tuple[float, ...] = (500, 1000, 2000),
    sizes: tuple[int, ...] = (10_000, 100_000),
    rounds: int = 3,
    out: Path = RESULTS,
    say: Say = print,
) -> Report:
    cluster, local = own_broker()
    await asyncio.to_thread(localkafka.up, cluster, local, say)
    settings = replace(settings, bootstrap_servers=cluster.bootstrap)
    bench = Run(settings, say)
    report = Report(settings.bootstrap_servers, settings.partitions, records, rounds)
    say(f"bench on {settings.bootstrap_servers}, {settings.partitions} partitions, {bench.prefix}")
    try:
        say("1/3 throughput")
        report.throughput = await measure_throughput(bench, records, 2_000, rounds)
        say("2/3 latency")
        for guarantee in ("at_least_once", "exactly_once"):
            report.latency += await measure_latency(bench, guarantee, rates, 20_000, 2_000)
        say("3/3 state")
        for size in sizes:
            report.state.append(await measure_state(bench, size))
    finally:
        bench.close()
        await asyncio.to_thread(localkafka.down, cluster, say)
    say("\n" + report.table())
    write(report, out)
    say(f"\nwritten: {out / 'latest.json'}, {out / 'latest.png'}")
    return report


def write(report: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = asdict(report)
    data["ratios"] = {t.name: report.ratio(t.name) for t in report.throughput}
    data["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    chart(report, out / "latest.png")


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [t.name.replace("pipeline, ", "") for t in report.throughput]
    ratios = [report.ratio(t.name) for t in report.throughput]
    bars = left.bar(names, ratios, color=["#999999", "#3b7dd8", "#d8663b"])
    left.bar_label(
        bars,
        labels=[
            f"{r:.2f}×\n{t.rate:,.0f}/s" for r, t in zip(ratios, report.throughput, strict=True)
        ],
    )
    left.axhline(0.25, color="#3b7dd8", linestyle=":", label="goal at_least_once 0.25×")
    left.axhline(0.15, color="#d8663b", linestyle=":", label="goal exactly_once 0.15×")
    left.set_ylim(0, 1.25)
    left.set_ylabel("throughput / bare aiokafka")
    left.set_title("Throughput, same broker, same run")
    left.legend(fontsize=8)
    for guarantee, color in (("at_least_once", "#3b7dd8"), ("exactly_once", "#d8663b")):
        rows = [r for r in report.latency if r.guarantee == guarantee and r.offered]
        for q, style in (("p50_ms", "-"), ("p99_ms", "--")):
            right.plot([r.offered for r in rows], [getattr(r, q) for r in rows], style,
                       marker="o", color=color, label=f"{guarantee} {q[:3]}")  # fmt: skip
    right.axhline(50, color="#3b7dd8", linestyle=":", label="goal at_least_once p99 50 ms")
    right.axhline(500, color="#d8663b", linestyle=":", label="goal exactly_once p99 500 ms")
    right.set_xlabel("offered rate (transactions/s)")
    right.set_ylabel("bank → notification (ms)")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_yticks([20, 50, 100, 200, 500, 1000])
    right.set_title("End-to-end latency by offered rate")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
