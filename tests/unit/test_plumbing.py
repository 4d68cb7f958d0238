"""The client factory, the metrics registry and the local broker's configuration."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

import streams
from streams import kafka
from streams.core.loopwatch import LoopWatch
from streams.devkit import localkafka, workerproc
from streams.errors import LocalKafkaError
from streams.metrics import ALLOWED_LABELS, Metrics
from streams.settings import LocalKafkaSettings, Settings
from streams.tools import kafkajars
from streams.worker import pipeline


class TestClientFactory:
    def test_plaintext_needs_no_credentials(self) -> None:
        """A local broker is reached with bootstrap servers alone."""
        options = kafka.connection_options(Settings())
        assert options["security_protocol"] == "PLAINTEXT" and "sasl_mechanism" not in options

    def test_sasl_ssl_sets_scram_and_tls(self) -> None:
        """SASL_SSL gives SCRAM-SHA-512 credentials and a TLS context."""
        options = kafka.connection_options(
            Settings(security_protocol="SASL_SSL", sasl_username="passerelle", sasl_password="pw")
        )
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "passerelle"
        assert isinstance(options["ssl_context"], ssl.SSLContext)

    async def test_consumers_read_committed_by_default(self) -> None:
        """No consumer of ours sees records of aborted transactions unless it asks to."""
        consumer = kafka.consumer(Settings(), "t")
        assert consumer._isolation_level == "read_committed"


class TestMetrics:
    def test_two_workers_in_one_process_do_not_collide(self) -> None:
        """Metrics live on the injected registry, so each test or worker has its own."""
        first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
        first.events_in.labels(bank="a").inc()
        assert second.registry.get_sample_value("passerelle_events_in_total", {"bank": "a"}) is None
        assert first.registry.get_sample_value("passerelle_events_in_total", {"bank": "a"}) == 1

    def test_no_label_can_name_a_person(self) -> None:
        """Labels are bank ids and enums: none is an account, psid or amount."""
        registry = CollectorRegistry()
        Metrics(registry)
        labels = {
            name for metric in registry.collect() for s in metric.samples for name in s.labels
        }
        assert labels <= ALLOWED_LABELS | {"le"}

    async def test_the_loop_watch_measures_how_long_the_loop_was_held(self) -> None:
        """A handler that holds the loop for 0.6 s shows as one lag of at least 0.5 s."""
        metrics = Metrics(CollectorRegistry())
        watch = LoopWatch(metrics)
        await watch.start()
        try:
            await asyncio.sleep(0.3)  # the watch is asleep in its interval
            time.sleep(0.6)  # what a long synchronous handler run does to the loop
            await asyncio.sleep(0.3)
        finally:
            await watch.stop()

        def count(le: str) -> float:
            sample = "passerelle_event_loop_lag_seconds_bucket"
            return metrics.registry.get_sample_value(sample, {"le": le}) or 0.0

        assert count("+Inf") - count("0.25") == 1  # one lag, between 0.25 and 1 s
        assert count("+Inf") - count("1.0") == 0


class TestLocalKafkaConfig:
    def test_the_single_node_replicates_once(self) -> None:
        """One node: replication factor 1, min.insync.replicas 1."""
        props = localkafka.Cluster.single(LocalKafkaSettings()).properties(
            localkafka.Cluster.single(LocalKafkaSettings()).nodes[0]
        )
        assert (props["offsets.topic.replication.factor"], props["min.insync.replicas"]) == (
            "1",
            "1",
        )

    def test_the_three_nodes_replicate_thrice_with_two_in_sync(self) -> None:
        """Three nodes: RF 3, min.insync.replicas 2, one quorum of three voters, distinct ports."""
        cluster = localkafka.Cluster.three(LocalKafkaSettings())
        props = [cluster.properties(n) for n in cluster.nodes]
        assert {p["default.replication.factor"] for p in props} == {"3"}
        assert {p["transaction.state.log.min.isr"] for p in props} == {"2"}
        assert len({p["controller.quorum.voters"] for p in props}) == 1
        assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"

    def test_brokers_talk_to_each_other_off_the_controller_port(self) -> None:
        """Transaction markers go broker to broker: never over the CONTROLLER listener."""
        cluster = localkafka.Cluster.single(LocalKafkaSettings())
        assert cluster.properties(cluster.nodes[0])["inter.broker.listener.name"] == "PLAINTEXT"

    def test_the_kafka_version_is_read_from_the_pom(self) -> None:
        """deploy/kafka/pom.xml is the one place the Kafka version is pinned."""
        assert kafkajars.kafka_version().startswith("4.")

    def test_a_port_in_use_is_reported_with_what_to_do(self, tmp_path: Path) -> None:
        """Starting on a port another process holds fails in one line naming the port."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            settings = LocalKafkaSettings(port=port, run_dir=tmp_path / "k")
            with pytest.raises(LocalKafkaError, match=f"port {port} is in use"):
                localkafka.up(localkafka.Cluster.single(settings), settings, say=lambda _: None)


def test_a_metric_child_is_made_once_and_counts_like_labels() -> None:
    """Metrics.child gives the same child for the same label values, and what it counts is
    what `labels()` would have counted."""
    from prometheus_client import CollectorRegistry

    from streams.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    first = metrics.child(metrics.decisions, "bank-a", "FORWARDED", "")
    assert metrics.child(metrics.decisions, "bank-a", "FORWARDED", "") is first
    first.inc()
    metrics.child(metrics.decisions, "bank-a", "WITHHELD", "NO_CONSENT").inc(2)
    sample = metrics.registry.get_sample_value
    labels = {"bank": "bank-a", "outcome": "WITHHELD", "reason": "NO_CONSENT"}
    assert sample("passerelle_decisions_total", labels) == 2
    assert (
        sample("passerelle_decisions_total", {**labels, "outcome": "FORWARDED", "reason": ""}) == 1
    )


class TestPipelineWiring:
    def test_only_the_notification_paths_stages_fetch_promptly(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ingest and accounts let the broker hold a fetch 10 ms, the conversation and the
        outcomes stages 100 ms, and each stage's consumer is opened with its own."""
        built = pipeline(Settings(allow_dev_hash_key=True), Metrics(CollectorRegistry()))
        assert built.outcomes is not None
        stages = [built.ingest, built.accounts, built.conversation, built.outcomes]
        asked = []

        class Opened(Exception):
            pass

        def consumer(_: Settings, **options: Any) -> None:
            asked.append(options["fetch_max_wait_ms"])
            raise Opened

        monkeypatch.setattr(kafka, "consumer", consumer)
        for stage in stages:
            with pytest.raises(Opened):
                asyncio.run(stage.run())
        assert asked == [10, 10, 100, 100]

    def test_the_ticker_ticks_the_stream_partitions_its_accounts_stage_owns(self) -> None:
        """The pipeline's ticker writes to the per-account stream's partitions that this
        worker's accounts stage owns now, none before it owns any."""
        built = pipeline(Settings(allow_dev_hash_key=True), Metrics(CollectorRegistry()))
        assert built.ticker is not None
        assert built.ticker.topic == built.accounts.spec.topics[0]
        assert list(built.ticker.owned()) == []
        for p in (5, 2):
            tp = TopicPartition(built.ticker.topic, p)
            built.accounts.ownership.partitions[tp] = cast(Any, None)
        assert list(built.ticker.owned()) == [2, 5]


def test_a_worker_subprocess_imports_the_package_it_is_given_wherever_it_starts(
    tmp_path: Path,
) -> None:
    """A `streams` folder in the worker's working folder is not the code it runs."""
    decoy = tmp_path / "streams"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy ran')\n")
    worker = workerproc.Worker(Settings(), "app", tmp_path / "w", "exactly_once", ["pipeline"])
    interpreter = worker.args[: worker.args.index("-m")]  # as the worker is started
    result = subprocess.run(
        [*interpreter, "-c", "import streams; print(streams.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == Path(streams.__file__).parent
