"""The fault suite's cluster: three KRaft nodes (RF 3, min.insync.replicas 2),
fresh for the session, on their own ports and folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from streams.devkit import localkafka
from streams.settings import LocalKafkaSettings
from tests.conftest import REPO, _session_cluster

FAULTS_CLUSTER_PORT = 19292  # nodes on 19292, 19302, 19312: below the ephemeral range


@pytest.fixture(scope="session")
def cluster_settings() -> LocalKafkaSettings:
    return dataclasses.replace(
        LocalKafkaSettings.from_env({}),
        cluster_port=FAULTS_CLUSTER_PORT,
        cluster_run_dir=REPO / ".run" / "kafka-faults",
    )


@pytest.fixture(scope="session")
def cluster(cluster_settings: LocalKafkaSettings) -> Iterator[localkafka.Cluster]:
    yield from _session_cluster(localkafka.Cluster.three(cluster_settings), cluster_settings)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "faults" in item.path.parts:
            item.add_marker(pytest.mark.kafka)
