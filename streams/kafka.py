"""The one Kafka client factory: every component connects through here.

Bootstrap servers, SASL/SCRAM and TLS come from `Settings`; nothing else in
the project builds a client's connection options by hand.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.partitioner import murmur2
from aiokafka.protocol.commit import OffsetFetchRequest
from aiokafka.protocol.fetch import FetchRequest

from streams import limits
from streams.errors import MissingTopicError
from streams.settings import Settings


def connection_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for reaching the brokers securely."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.uses_sasl:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    if settings.uses_tls:
        options["ssl_context"] = ssl_context(settings)
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting the configured CA file (or the system's)."""
    cafile = str(settings.ssl_cafile) if settings.ssl_cafile else None
    return ssl.create_default_context(cafile=cafile)


# A stage writes a few thousand records per partition and transaction: record
# batches this large make that one or two batches per partition (aiokafka
# sends one batch per partition per request, one request at a time per broker).
BATCH_BYTES = 512 * 1024


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer; idempotent by default, as every writer of ours should be."""
    options = {
        "enable_idempotence": True,
        "acks": "all",
        # Room for a dead letter: the largest input plus its headers.
        "max_request_size": limits.MAX_DLQ_BYTES,
        **connection_options(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def consumer(
    settings: Settings, *topics: str, quiet_wait_ms: int | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer; read_committed by default, so aborted transactions are never seen.

    With `quiet_wait_ms`, a fetch that names every partition the consumer reads from a
    broker may wait that long there (`QuietConsumer`); `fetch_max_wait_ms` bounds the rest.
    """
    options = {"isolation_level": "read_committed", **connection_options(settings)}
    options.update(overrides)
    if quiet_wait_ms is None:
        return AIOKafkaConsumer(*topics, **options)
    return QuietConsumer(*topics, quiet_wait_ms=quiet_wait_ms, **options)


def fetch_wait(named: int, read_there: int, wait_ms: int, quiet_wait_ms: int) -> int:
    """How long a broker may hold a fetch that names `named` of the `read_there`
    partitions the consumer reads from it.

    A fetch waits at the broker until it has a first byte (fetch_min_bytes 1) or its
    wait is over. One that names every partition returns with the first record any of
    them gets, so it may wait long: it only ends sooner when nothing comes. One that
    leaves a partition out (aiokafka leaves out a partition whose records the
    application has not taken yet, or a paused one) must return soon: it is the one
    fetch in flight to that broker, and the partition left out is fetched again only
    once it has returned.
    """
    return quiet_wait_ms if named >= read_there else wait_ms


class QuietFetcher(Fetcher):  # type: ignore[misc]
    """aiokafka's fetcher, its fetches' wait chosen by `fetch_wait` (set by QuietConsumer)."""

    quiet_wait_ms: int

    def _get_actions_per_node(self, assignment: Any) -> tuple[Any, ...]:
        requests, *rest = super()._get_actions_per_node(assignment)
        if requests and self._fetch_min_bytes <= 1:
            read_there = Counter(self._select_read_replica(tp) for tp in assignment.tps)
            requests = [
                (node, self._waiting(request, read_there[node])) for node, request in requests
            ]
        return (requests, *rest)

    def _waiting(self, request: FetchRequest, read_there: int) -> FetchRequest:
        """The request aiokafka built, only its wait changed (all else stays as built)."""
        named = sum(len(partitions) for _, partitions in request.topics)
        request._max_wait_ms = fetch_wait(
            named, read_there, self._fetch_max_wait_ms, self.quiet_wait_ms
        )
        return request


class QuietConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """A consumer that costs little while it has nothing to read.

    A caught-up consumer's fetch comes back empty from every broker each
    `fetch_max_wait_ms`: a hundred fetches a second per broker at 10 ms, each encoded
    and decoded in Python (most of what an idle worker spent). Its fetches that name
    every partition it reads from a broker wait `quiet_wait_ms` instead (`fetch_wait`).
    aiokafka builds its fetcher in `start()` and has no hook for it: the one started is
    made a QuietFetcher (its class, the only change) once `start()` returns. A fetch sent
    before that (`start()` waits for the group's first assignment) keeps the short wait.
    """

    def __init__(self, *topics: str, quiet_wait_ms: int, **options: Any) -> None:
        super().__init__(*topics, **options)
        self._quiet_wait_ms = quiet_wait_ms

    async def start(self) -> None:
        await super().start()
        self._fetcher.__class__ = QuietFetcher
        self._fetcher.quiet_wait_ms = self._quiet_wait_ms


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """A topic's partitions, asking the brokers when the consumer's metadata lacks it
    (none if the topic does not exist)."""
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def check_topics(reader: AIOKafkaConsumer, topics: Sequence[str], hint: str) -> None:
    """Refuse, in one sentence that ends with `hint`, when one of these topics does not
    exist: asked of a started consumer (a producer would wait for the metadata of a
    missing topic, then time out)."""
    missing = [t for t in topics if not await partitions_of(reader, t)]
    if missing:
        raise MissingTopicError(f"no topic {', '.join(missing)}: {hint}")


async def require_topics(settings: Settings, topics: Sequence[str], hint: str) -> None:
    """`check_topics` for a caller that has no consumer of its own (a producer's)."""
    reader = consumer(settings, group_id=None)
    try:
        await reader.start()
        await check_topics(reader, topics, hint)
    finally:
        await reader.stop()


def admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    options = connection_options(settings)
    options.update(overrides)
    return AIOKafkaAdminClient(**options)


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """faust.App keyword arguments for the same connection."""
    import faust  # imported here so that tools do not pay faust's import time

    options: dict[str, Any] = {"broker": f"kafka://{settings.bootstrap_servers}"}
    if settings.uses_sasl:
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism,
            ssl_context=ssl_context(settings) if settings.uses_tls else None,
        )
    elif settings.uses_tls:
        options["broker_credentials"] = faust.SSLCredentials(ssl_context(settings))
    return options


@lru_cache(maxsize=1 << 17)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key among `partitions`."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


async def read_all(
    settings: Settings, topic: str, missing: str | None = None, key: bytes | None = None
) -> list[Any]:
    """Every committed record of a topic, partition by partition, in offset order (with
    `key`, only of the partition the default partitioner gives that key). A topic that
    does not exist has none, unless `missing` says what to do then (`check_topics`)."""
    reader = consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        await reader.start()
        if missing is not None:
            await check_topics(reader, [topic], missing)
        tps = await partitions_of(reader, topic)
        if not tps:
            return []
        if key is not None:
            tps = [tps[partition_of(key, len(tps))]]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        records: list[Any] = []
        for tp in tps:
            while await reader.position(tp) < ends[tp]:
                fetched = await reader.getmany(tp, timeout_ms=1000)
                records.extend(r for r in fetched.get(tp, []) if r.offset < ends[tp])
        return records
    finally:
        await reader.stop()


async def committed(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's group's committed offset of `tp`; None if none was ever committed.

    Not aiokafka's `committed()`: it sends OffsetFetch v3 and ignores the response's
    group-level error. While the group's coordinator loads or has moved (a broker
    bounced, leadership rebalanced), the broker answers with that error and no
    partitions, and `committed()` says None, as if the group had never committed: a
    worker would then read its input again from the start (a fault run forwarded
    41 406 bank records twice that way; pykafka#958 and sarama#3574 are the same bug).
    Here a group-level error is retried, as aiokafka retries a partition-level one."""
    coordinator = consumer._coordinator
    assert coordinator is not None, "a consumer of a group, started"
    while True:
        await coordinator.ensure_coordinator_known()
        request = OffsetFetchRequest(coordinator.group_id, [(tp.topic, [tp.partition])])
        try:
            response = await coordinator._send_req(request)
            _raise_for(getattr(response, "error_code", 0))
            offsets = {
                (topic, partition): (offset, code)
                for topic, partitions in response.topics
                for partition, offset, _metadata, code in partitions
            }
            offset, code = offsets.get((tp.topic, tp.partition), (-1, 0))
            _raise_for(code)
            return offset if offset >= 0 else None
        except kafka_errors.KafkaError as exc:
            if isinstance(exc, kafka_errors.NotCoordinatorForGroupError):
                coordinator.coordinator_dead()
            if not exc.retriable:
                raise
            await asyncio.sleep(coordinator._retry_backoff_ms / 1000)


def _raise_for(code: int) -> None:
    error = kafka_errors.for_code(code)
    if error is not kafka_errors.NoError:
        raise error()
