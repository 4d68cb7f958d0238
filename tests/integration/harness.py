"""Helpers for tests that run workers as subprocesses against the session broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams import kafka
from streams.catalog import Catalog
from streams.devkit.workerproc import Worker, free_port, http_get, page, scraped, until_ready
from streams.settings import Settings
from streams.tools.topics import create as create_topics
from tests.conftest import unique_bank

# re-exported for the tests
__all__ = ["Worker", "free_port", "http_get", "page", "scraped", "until_ready"]


async def group_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (empty before any commit)."""
    client = kafka.admin(settings)
    await client.start()
    try:
        offsets = await committed_offsets(client, group, {topic})
    except KafkaError as exc:
        if not exc.retriable:
            raise
        return {}  # no coordinator yet (a fresh broker): nothing committed
    finally:
        await client.close()
    return {tp.partition: offset for tp, offset in offsets.items()}


async def committed_offsets(
    client: AIOKafkaAdminClient, group: str, topics: set[str]
) -> dict[TopicPartition, int]:
    """The group's committed offset per partition of these topics (none before a commit)."""
    offsets = await client.list_consumer_group_offsets(group)
    return {tp: m.offset for tp, m in offsets.items() if tp.topic in topics and m.offset > 0}


async def committed(settings: Settings, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on `topic`: records processed and committed."""
    return sum((await group_offsets(settings, group, topic)).values())


async def until(
    found: Callable[[], Awaitable[bool]], worker: Worker, timeout_s: float = 90.0
) -> None:
    """Wait for a condition, failing early if the worker dies."""
    deadline = time.monotonic() + timeout_s
    while not await found():
        assert worker.alive(), f"worker died; see {worker.log}"
        assert time.monotonic() < deadline, f"timed out; see {worker.log}"
        await asyncio.sleep(0.5)


async def end_offsets(settings: Settings, topic: str) -> int:
    """Sum of the end offsets of `topic`'s partitions."""
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def caught_up(settings: Settings, group: str, topic: str) -> bool:
    """Has `group` committed past the last record of every partition of `topic`?

    Compared with the last *record*, not the end offset: a topic written in
    transactions ends with a commit marker that consumers never commit past.
    """
    from streams.kafka import read_all

    last: dict[int, int] = {}
    for record in await read_all(settings, topic):
        last[record.partition] = max(last.get(record.partition, -1), record.offset)
    done = await group_offsets(settings, group, topic)
    return all(done.get(p, 0) > offset for p, offset in last.items())


def metrics_text(worker: Worker) -> str:
    """The worker's /metrics page, as Prometheus scrapes it."""
    status, text = page(worker, "/metrics")
    assert status == 200, status
    return text


class Prometheus:
    """A real Prometheus server (Debian's package), scraping what the config says."""

    def __init__(self, config: Path, data_dir: Path) -> None:
        import shutil

        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: `make prometheus` installs Debian's package"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir / "prometheus.log"
        self.args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"prometheus exited; see {self.log}"
            try:
                if http_get(f"{self.url}/-/ready", 2)[0] == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready; see {self.log}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def api(self, path: str, **params: str) -> Any:
        """The `data` of one HTTP API call; an error status fails the test."""
        import json
        import urllib.parse

        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", body
        return answer["data"]

    def query(self, promql: str) -> dict[str, float]:
        """An instant query: each series' labels (as text) and value."""
        result = self.api("query", query=promql)["result"]
        return {
            ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1])
            for r in result
        }


Record = tuple[str, bytes | None, bytes | None]


async def produce(settings: Settings, records: list[Record]) -> None:
    """Write (topic, key, value) records in order, each acknowledged before the next."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key)
    finally:
        await producer.stop()


async def send(settings: Settings, topic: str, key: bytes, value: bytes | None) -> None:
    """Write one record and wait for its acknowledgement."""
    await produce(settings, [(topic, key, value)])


async def pipeline_worker(
    settings: Settings,
    prefix: str,
    data: Path,
    workers: list[Worker],
    env: dict[str, str] | None = None,
) -> tuple[Settings, str, Worker]:
    """A pipeline worker (exactly_once) started on a new app id, with a new bank's topics
    and the app's, and `env` on top of the environment; its settings, the bank, and the
    worker (stopped by the `workers` fixture if the test does not)."""
    app_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=app_id)
    bank = unique_bank()
    await create_topics(settings, Catalog(settings).all([bank]), say=lambda _: None)
    worker = Worker(settings, app_id, data, "exactly_once", ["pipeline"])
    worker.env.update(env or {})
    workers.append(worker)
    worker.start()
    return settings, bank, worker


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`passerelle <args>` as an operator runs it, against these settings' brokers."""
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        capture_output=True,
        text=True,
        errors="replace",  # a dead letter's key may be any bytes
        timeout=120,
        env={
            **os.environ,
            "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers,
            "PASSERELLE_APP_ID": settings.app_id,  # whose internal topics (the changelog)
        },
    )
