"""Shared fixtures: one real broker per test session, uuid-named topics per test.

The broker is the project's own (`streams.devkit.localkafka`), on its own ports
and run folder so that a developer's `make kafka-up` broker is left alone. A
test that needs Kafka fails when it cannot get one: nothing here skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka.admin import NewTopic

from streams import kafka
from streams.codec import Codec, EmbeddedRegistry
from streams.core.store import PartitionStore
from streams.devkit import localkafka
from streams.settings import LocalKafkaSettings, Settings

REPO = Path(__file__).resolve().parent.parent
TEST_BROKER_PORT = 9192
TEST_SECURE_BROKER_PORT = 9392
# Every receive in a test is bounded by this.
RECEIVE_TIMEOUT_S = 30.0
# Workers the tests start use the public development hash key (as `make test` allows).
os.environ.setdefault("PASSERELLE_ALLOW_DEV_HASH_KEY", "on")


@pytest.fixture(scope="session")
def registry() -> EmbeddedRegistry:
    return EmbeddedRegistry.load()


@pytest.fixture(scope="session")
def codec(registry: EmbeddedRegistry) -> Codec:
    return Codec(registry)


@pytest.fixture(scope="session")
def local_kafka_settings() -> LocalKafkaSettings:
    return dataclasses.replace(
        LocalKafkaSettings.from_env({}),
        port=TEST_BROKER_PORT,
        run_dir=REPO / ".run" / "kafka-test",
    )


def _session_cluster(
    cluster: localkafka.Cluster, settings: LocalKafkaSettings
) -> Iterator[localkafka.Cluster]:
    """Start `cluster` if needed and stop it after the session if we started it."""
    already_running = all(pid for _, pid in localkafka.status(cluster))
    if not already_running:
        # A fresh broker per session: pattern-subscribed workers would otherwise
        # read every bank topic that earlier sessions left behind.
        shutil.rmtree(cluster.dir, ignore_errors=True)
    localkafka.up(cluster, settings, say=lambda _: None)
    yield cluster
    if not already_running:
        localkafka.down(cluster, say=lambda _: None)
        for node in cluster.nodes:  # the data (GBs after the fault suite); logs stay
            shutil.rmtree(node.dir / "data", ignore_errors=True)


SPARE_BROKER_PORT = 9292


@pytest.fixture
def spare(
    local_kafka_settings: LocalKafkaSettings, tmp_path: Path
) -> Iterator[tuple[localkafka.Cluster, LocalKafkaSettings]]:
    """A second single node on its own port and folder, not started; stopped after the
    test whatever happens. The cluster and the settings that start it."""
    settings = dataclasses.replace(
        local_kafka_settings, port=SPARE_BROKER_PORT, run_dir=tmp_path / "spare"
    )
    cluster = localkafka.Cluster.single(settings)
    yield cluster, settings
    localkafka.down(cluster, say=lambda _: None)


@pytest.fixture
def bulk_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The stores loaded in bulk during the test (`PartitionStore.loading`), in order."""
    loaded: list[Path] = []
    plain_loading = PartitionStore.loading

    def loading(store: PartitionStore) -> contextlib.AbstractContextManager[None]:
        loaded.append(store.path)
        return plain_loading(store)

    monkeypatch.setattr(PartitionStore, "loading", loading)
    return loaded


@pytest.fixture
def served() -> Iterator[str]:
    """`passerelle schemas serve` on a free port (its URL), stopped after the test."""
    from streams.devkit.workerproc import free_port, http_get

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "schemas", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            http_get(f"{url}/subjects")
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "it did not serve"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def broker(local_kafka_settings: LocalKafkaSettings) -> Iterator[localkafka.Cluster]:
    """The session's single-node broker."""
    yield from _session_cluster(
        localkafka.Cluster.single(local_kafka_settings), local_kafka_settings
    )


SECURE_BANKS = ("alpha", "beta")


@pytest.fixture(scope="session")
def secure_broker(local_kafka_settings: LocalKafkaSettings) -> Iterator[localkafka.Cluster]:
    """The session's secure node: SCRAM-SHA-512, ACLs enforced, users for two banks."""
    settings = dataclasses.replace(
        local_kafka_settings,
        secure_port=TEST_SECURE_BROKER_PORT,
        secure_run_dir=REPO / ".run" / "kafka-secure-test",
        secure_banks=SECURE_BANKS,
    )
    yield from _session_cluster(localkafka.Cluster.secured(settings), settings)


@pytest.fixture
def settings(broker: localkafka.Cluster) -> Settings:
    """Settings that reach the session broker."""
    return Settings(bootstrap_servers=broker.bootstrap, allow_dev_hash_key=True)


_T = TypeVar("_T")
NewTopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def new_topic(settings: Settings) -> NewTopicFactory:
    """Create a topic with a fresh uuid name; returns the name."""

    async def create(prefix: str = "test", partitions: int = 1, **config: str) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        client = kafka.admin(settings)
        await client.start()
        try:
            response = await client.create_topics(
                [NewTopic(name, partitions, 1, topic_configs=config)]
            )
            assert response.topic_errors[0][1] == 0, response.topic_errors
        finally:
            await client.close()
        return name

    return create


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Every worker subprocess a test starts is killed after it, whatever happens."""
    started: list[Any] = []
    yield started
    for worker in started:
        if worker.alive():
            worker.kill()


def unique_bank() -> str:
    return f"bank-{uuid.uuid4().hex[:10]}"


async def fresh_app(settings: Settings, prefix: str, banks: list[str]) -> Settings:
    """Settings for a new app id on the session broker, with the catalog's topics
    (these banks' ingest topics, the shared ones, the app's internal ones) created."""
    from streams.catalog import Catalog
    from streams.tools import topics

    app = Settings(
        bootstrap_servers=settings.bootstrap_servers,
        app_id=f"{prefix}-{uuid.uuid4().hex[:8]}",
        allow_dev_hash_key=settings.allow_dev_hash_key,
    )
    await topics.create(app, Catalog(app).all(banks), say=lambda _: None)
    return app


async def bounded(awaitable: Awaitable[_T], timeout: float = RECEIVE_TIMEOUT_S) -> _T:
    return await asyncio.wait_for(awaitable, timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs the real broker: mark it `kafka`."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.kafka)
