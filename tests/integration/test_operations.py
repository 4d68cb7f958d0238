"""Operations on a live worker: a real Prometheus scrapes it through a simulated run,
and /readyz holds back while a changelog restores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry, generate_latest

from streams import kafka, model
from streams.catalog import CONSENTS, Catalog, bank_topic_name
from streams.codec import Codec
from streams.core.store import table_key
from streams.core.ticks import TICK_KEY, encode_tick
from streams.devkit import standin
from streams.devkit.standin_stage import COUNTS
from streams.kafka import read_all
from streams.metrics import DeliveryMetrics
from streams.settings import Settings
from streams.tools import reconcile, simulate
from tests.conftest import fresh_app, unique_bank
from tests.deploy import (
    PROMETHEUS,
    RULES,
    alerts,
    dashboard_queries,
    exposed,
    names_in,
    recorded,
    rule_queries,
)
from tests.integration.harness import Prometheus, Worker, metrics_text, page

SCRAPE = "1s"


def prometheus_config(tmp_path: Path, worker: Worker) -> Path:
    """deploy/prometheus/prometheus.yml, scraping this worker every second."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE}
    config["rule_files"] = [str(RULES)]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "passerelle"]
    config["scrape_configs"] = [job]  # the delivery worker's job is not run here
    job["static_configs"] = [{"targets": [f"127.0.0.1:{worker.env['PASSERELLE_WEB_PORT']}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def eventually(
    prometheus: Prometheus, promql: str, expected: float, timeout_s: float = 60
) -> None:
    """Wait until the query's single value equals `expected` (scrapes lag a little)."""
    deadline = time.monotonic() + timeout_s
    while True:
        values = list(prometheus.query(promql).values())
        if values == [expected]:
            return
        assert time.monotonic() < deadline, f"{promql} = {values}, expected {expected}"
        await asyncio.sleep(1)


async def all_positive(
    prometheus: Prometheus, queries: dict[str, str], timeout_s: float = 60
) -> dict[str, dict[str, float]]:
    """Wait until every query has series, all positive; returns what each found."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {what: prometheus.query(q) for what, q in queries.items()}
        missing = {w: s for w, s in found.items() if not s or min(s.values()) <= 0}
        if not missing:
            return found
        assert time.monotonic() < deadline, missing
        await asyncio.sleep(1)


async def test_a_real_prometheus_scrapes_a_worker_through_a_simulated_run(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Prometheus holds the key series with the values the topics reconcile to, its rules
    load and evaluate, no alert fires on a healthy run, and every query of the dashboard
    and the rules names a metric the worker exposes."""
    bank = simulate.Bank(unique_bank(), "fr-FR", "Europe/Paris", "EUR", "p1")
    settings = await fresh_app(settings, "ops", [bank.bank_id])
    app_id = settings.app_id
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    worker.env["PASSERELLE_LOG_FORMAT"] = "json"
    workers.append(worker)
    worker.start()
    prometheus = Prometheus(prometheus_config(tmp_path, worker), tmp_path / "prometheus")
    prometheus.start()
    try:
        stream = Catalog(settings).account_stream().name

        async def consents_in(keys: set[bytes]) -> None:
            await simulate.until_in_stream(settings, stream, keys)

        await simulate.run(
            settings,
            codec,
            3000,
            rate=500,  # over seconds, so scrapes see the counters rise and rates are not 0
            banks=[bank],
            seed=23,
            say=lambda _: None,
            after_consents=consents_in,
        )
        counts = (await reconcile.wait_balanced(settings, codec, [bank.bank_id], 120))[bank.bank_id]
        assert counts.balanced, counts.line(bank.bank_id)
        print(counts.line(bank.bank_id))
        b = f'bank="{bank.bank_id}"'

        # The counters Prometheus holds are the counts the topics reconcile to.
        await eventually(prometheus, f"sum(passerelle_events_in_total{{{b}}})", counts.ingested)
        decided = counts.forwarded + sum(counts.withheld.values())
        await eventually(prometheus, f"sum(passerelle_decisions_total{{{b}}})", decided)
        await eventually(
            prometheus,
            f'sum(passerelle_decisions_total{{{b},outcome="FORWARDED"}})',
            counts.forwarded,
        )
        await eventually(prometheus, f"sum(passerelle_dlq_total{{{b}}})", sum(counts.dlq.values()))
        await eventually(prometheus, 'up{job="passerelle"}', 1)
        await eventually(prometheus, "sum(passerelle_stage_ready)", 4)

        queries = {
            "notifications": 'passerelle_notifications_total{kind="TRANSACTION"}',
            "latency": 'passerelle_e2e_latency_seconds_count{source="ingest"}',
            "erasures": f"sum(passerelle_erasures_total{{{b}}})",
            "table keys": 'passerelle_table_keys{table="accounts"}',
            "store memtables": 'passerelle_store_memory_bytes{kind="memtables"}',
            "commits": 'passerelle_transactions_total{result="commit"}',
            "rebalances": "passerelle_rebalances_total",
            # Recording rules: a rate needs two scrapes, then an evaluation.
            "events rate (rule)": f"passerelle:events_in:rate5m{{{b}}}",
            "p99 latency (rule)": "passerelle:e2e_latency_seconds:p99_5m",
        }
        found = await all_positive(prometheus, queries)
        print(json.dumps(found, indent=1))
        lag = prometheus.query(f'passerelle_consumer_lag{{topic="{stream}"}}')
        assert len(lag) == settings.partitions and all(v >= 0 for v in lag.values()), lag
        assert prometheus.query("sum(passerelle_recovery_remaining)") == {"": 0.0}

        groups = prometheus.api("rules")["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        assert len(loaded) == len(recorded()) + len(alerts())
        assert all(r["health"] == "ok" for r in loaded), [r for r in loaded if r["health"] != "ok"]
        assert prometheus.query('ALERTS{alertstate="firing"}') == {}

        scraped = metrics_text(worker)
        # The delivery alerts name the delivery worker's metrics (its own process, scraped
        # in tests/integration/test_deliver.py); the rest must be this worker's.
        delivery = generate_latest(DeliveryMetrics(CollectorRegistry()).registry).decode()
        known = exposed(scraped) | recorded() | exposed(delivery)
        for query in dashboard_queries() + rule_queries():
            assert names_in(query) <= known, (query, names_in(query) - known)
        assert bank.bank_id in scraped
    finally:
        prometheus.stop()
        assert worker.stop() == 0
    await check_event_log(settings, codec, worker, bank.bank_id)


async def check_event_log(settings: Settings, codec: Codec, worker: Worker, bank: str) -> None:
    """The JSON log has the DLQ and erasure events with their facts, and not one
    account number or psid of the bank's customers."""
    lines = worker.log.read_text().splitlines()
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    dlq = [e for e in events if e.get("event") == "dlq" and e.get("bank") == bank]
    assert dlq and all({"topic", "partition", "offset", "reason"} <= set(e) for e in dlq)
    erased = [e for e in events if e.get("event") == "erasure" and e.get("bank") == bank]
    assert erased and all(re.fullmatch(r"[0-9a-f:k]+", e["account_hash"]) for e in erased)
    accounts = {r.key.decode() for r in await read_all(settings, bank_topic_name(bank)) if r.key}
    psids = {
        psid
        for r in await read_all(settings, CONSENTS)
        if r.key and r.key.decode().startswith(f"{bank}:") and r.value
        for psid in [codec.decode(model.CONSENT, r.value)["psid"]]
    }
    assert len(accounts) > 10 and len(psids) > 10
    text = "\n".join(lines)
    leaked = [a for a in accounts | psids if a in text]
    assert not leaked, f"{len(leaked)} account numbers or psids in the worker's log"


RECOVERY = re.compile(r"^passerelle_recovery_remaining\{[^}]*\} (\S+)$", re.M)
LAG = re.compile(r"^passerelle_consumer_lag\{[^}]*\} (\S+)$", re.M)


async def watch_until_ready(
    worker: Worker, stage: str, waiting_on: str, timeout_s: float = 120
) -> tuple[list[dict[str, Any]], list[float]]:
    """Poll /readyz until 200. Returns what `stage` reported on each 503 and, each
    time it was `waiting_on` something ("restoring" or "catching_up"), the values
    of the matching gauge (recovery remaining or consumer lag) on /metrics;
    /healthz must answer meanwhile."""
    gauge = RECOVERY if waiting_on == "restoring" else LAG
    waits: list[dict[str, Any]] = []
    gauges: list[float] = []
    deadline = time.monotonic() + timeout_s
    while True:
        assert worker.alive(), f"worker died; see {worker.log}"
        assert time.monotonic() < deadline, f"never ready; see {worker.log}"
        try:
            status, body = page(worker, "/readyz")
        except OSError:  # the web server is not up yet
            await asyncio.sleep(0.1)
            continue
        answer = json.loads(body)
        if status == 200:
            assert answer["ready"] is True
            assert answer["stages"][stage] == {"ready": True, "restoring": {}, "catching_up": {}}
            return waits, gauges
        assert status == 503 and answer["ready"] is False, (status, body)
        waits.append(answer["stages"][stage])
        if answer["stages"][stage][waiting_on]:
            assert page(worker, "/healthz")[0] == 200
            gauges += [float(v) for v in gauge.findall(metrics_text(worker))]
        await asyncio.sleep(0.05)


async def fill_changelog(settings: Settings, changelog: str, keys: int) -> None:
    """Write `keys` committed counter states straight into a stand-in changelog, each
    in the partition its input key goes to (Kafka's default partitioner)."""
    partitions = list(range(settings.partitions))
    producer = kafka.producer(settings, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        state = json.dumps({"count": 1, "summarized": True}).encode()
        futures = [
            await producer.send(
                changelog,
                state,
                table_key(COUNTS, f"key-{i}".encode()),
                partition=DefaultPartitioner()(f"key-{i}".encode(), partitions, partitions),
            )
            for i in range(keys)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_readyz_answers_not_ready_while_a_changelog_restores_then_ready(
    settings: Settings, tmp_path: Path, workers: list[Worker]
) -> None:
    """While 400 000 changelog records restore, /readyz is 503 and names what is left,
    /healthz answers and the recovery gauge counts down; then /readyz is 200, and the
    restored state is the one the next input builds on."""
    prefix = f"ready-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=prefix)
    await standin.provision(settings, prefix)
    changelog = Catalog(settings).changelog("standin").name
    await fill_changelog(settings, changelog, 400_000)
    worker = Worker.standin(settings, prefix, tmp_path / "data", "exactly_once")
    workers.append(worker)
    worker.start()

    waits, remaining_seen = await watch_until_ready(worker, "standin", "restoring")
    restoring_seen = [w["restoring"] for w in waits if w["restoring"]]
    print(f"{len(restoring_seen)} not-ready answers while restoring; first {restoring_seen[:1]}")
    assert restoring_seen, "never saw /readyz report a restore in progress"
    assert max(remaining_seen) > 0, "the recovery gauge counted while /readyz waited"
    text = metrics_text(worker)
    assert RECOVERY.findall(text) == ["0.0"] * settings.partitions
    keys = re.search(r'^passerelle_table_keys\{table="standin"\} (\S+)$', text, re.M)
    assert keys and float(keys.group(1)) >= 400_000 * 0.9, "RocksDB's estimate of the keys"

    # The next input for a restored key continues its count.
    await standin.produce_inputs(settings, prefix, 1, keys=1)  # id 0 → key-0
    out = await _first_output(settings, f"{prefix}.out-a")
    assert json.loads(out) == {"id": 0, "count": 2}
    assert worker.stop() == 0


async def _first_output(settings: Settings, topic: str) -> bytes:
    consumer = kafka.consumer(settings, topic, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 60)
        value: bytes = record.value
        return value
    finally:
        await consumer.stop()


async def test_readyz_waits_for_the_account_stream_backlog_found_at_start(
    settings: Settings, tmp_path: Path, workers: list[Worker]
) -> None:
    """A pipeline worker that starts behind 60 000 records of its account stream is not
    ready until it has read up to where the stream ended at assignment: /readyz names
    the partitions and their target offsets, and the lag gauge counts down."""
    settings = await fresh_app(settings, "catchup", [])
    app_id = settings.app_id
    assert settings.partitions == 4
    stream = Catalog(settings).account_stream().name
    producer = kafka.producer(settings, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        past = int(time.time() * 1000) - 86_400_000
        sent = [
            await producer.send(stream, encode_tick(past + n), TICK_KEY, partition=n % 4)
            for n in range(60_000)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()

    waits, lags = await watch_until_ready(worker, "accounts", "catching_up")
    behind = [w["catching_up"] for w in waits if w["catching_up"]]
    print(f"{len(behind)} not-ready answers while catching up; first {behind[:1]}")
    assert behind, "never saw /readyz report a backlog being read"
    assert set(behind[0]) <= {f"{stream}-{p}" for p in range(settings.partitions)}
    assert all(end >= 60_000 // 4 for end in behind[0].values())
    assert max(lags) > 0, "the lag gauge counted while /readyz waited"
    assert worker.stop() == 0
