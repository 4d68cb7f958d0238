"""The bench's fourth measure: one delivery worker, against a Send API at 0 and 50 ms.

The local Send API runs in its own process (`python -m streams.devkit.sendapi
--latency-ms L`), the delivery worker (`streams.tools.deliver.Deliverer`) in
the bench's, with its default concurrency (256 calls in flight) and a Page pace
high enough not to be what limits it. The same notifications (four Pages,
distinct customers, three each) are delivered once with an API that answers at
once and once with one that answers 50 ms later; each is timed from the
worker's first fetch to its last outcome. The ratio says how much of the API's
latency the worker's concurrency hides (1.0: all of it).
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from streams import kafka, model
from streams.catalog import Catalog
from streams.devkit.bench.measure import Run
from streams.devkit.bench.report import Throughput
from streams.devkit.workerproc import free_port
from streams.metrics import DeliveryMetrics
from streams.settings import DeliverySettings
from streams.tools import topics
from streams.tools.deliver import Deliverer

PAGES = ("105000000000001", "105000000000002", "105000000000003", "105000000000004")
TIMEOUT_S = 300.0


def notifications(count: int) -> list[model.Notification]:
    now = int(time.time() * 1000)
    made: list[model.Notification] = []
    for i in range(count):
        made.append(
            {
                "notification_id": f"ntf-bench-{uuid.uuid4().hex}",
                "kind": "TRANSACTION",
                "psid": f"{2487_0000_0000_0000 + i // 3}",
                "page_id": PAGES[i % len(PAGES)],
                "bank_id": "banque-alpine",
                "consent_id": f"cns-{i // 3}",
                "locale": "fr-FR",
                "text": f"Paiement de {i % 97},50 € chez Carrefour Market — solde : 1 234,56 €",
                "data": {
                    "account_masked": "•••• 0189",
                    "amount_minor": -(i % 97) * 100 - 50,
                    "currency": "EUR",
                    "merchant_name": "Carrefour Market",
                    "category": "groceries",
                    "balance_minor": 123_456,
                    "digest": None,
                },
                "occurred_at": now,
                "created_at": now,
                "expires_at": now + 86_400_000,
                "envelope": {
                    "messaging_type": "MESSAGE_TAG",
                    "tag": "POST_PURCHASE_UPDATE",
                    "silent": False,
                    "recurring": False,
                },
                "quick_replies": None,
            }
        )
    return made


async def measure_delivery(run: Run, count: int) -> list[Throughput]:
    """Deliveries a second of one worker at 0 ms and at 50 ms of API latency."""
    settings = run.settings
    topic = f"{run.prefix}.notifications"
    cat = Catalog(settings)
    await topics.create(
        settings,
        [replace(cat.notifications(), name=topic), cat.feedback(), cat.dlq()],
        say=lambda _: None,
    )
    notes = notifications(count)
    producer = kafka.producer(settings, linger_ms=20)
    await producer.start()
    try:
        for n in notes:
            value = run.codec.encode(model.NOTIFICATION, copy.deepcopy(n))
            await producer.send(topic, value, key=n["psid"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    tokens = run.folder / "page-tokens"
    tokens.mkdir(mode=0o700)
    for page in PAGES:
        (tokens / page).write_text(f"token-{page}")
    results = []
    for latency in (0, 50):
        seconds = await _deliver_all(run, topic, tokens, latency, count)
        results.append(Throughput(f"deliver, API {latency} ms", count, seconds))
        run.say(f"  API {latency} ms: {count / seconds:,.0f} deliveries/s")
    return results


async def _deliver_all(run: Run, topic: str, tokens: Path, latency: int, count: int) -> float:
    port = free_port()
    local_api = [sys.executable, "-m", "streams.devkit.sendapi", "--port", str(port)]
    api = subprocess.Popen(
        [*local_api, "--tokens", str(tokens), "--latency-ms", str(latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _until_listening(port)
        config = DeliverySettings(
            graph_url=f"http://127.0.0.1:{port}",
            page_tokens_dir=tokens,
            state_dir=run.folder / f"deliver-{latency}",
            page_rate=1_000_000,
        )
        metrics = DeliveryMetrics(CollectorRegistry())
        group = f"messenger-bench-{latency}-{uuid.uuid4().hex[:6]}"
        worker = Deliverer(run.settings, config, run.codec, metrics, topic, group, "earliest")
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(worker.ready.wait(), TIMEOUT_S)
        started = time.monotonic()
        deadline = started + TIMEOUT_S
        while _delivered(metrics) < count:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError(f"{_delivered(metrics):.0f} of {count} delivered")
            await asyncio.sleep(0.02)
        seconds = time.monotonic() - started
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)
        return seconds
    finally:
        api.terminate()
        api.wait(10)


def _delivered(metrics: DeliveryMetrics) -> float:
    total = 0.0
    for page in PAGES:
        labels = {"page": page, "outcome": "DELIVERED"}
        total += metrics.registry.get_sample_value("passerelle_deliveries_total", labels) or 0.0
    return total


async def _until_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError("the local Send API did not start")
