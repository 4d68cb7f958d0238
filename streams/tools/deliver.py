"""`passerelle deliver`: the reference delivery worker, from the topic to the Send API.

It reads `messenger.notifications.v1` (read_committed, in a `messenger-` group)
and calls the Messenger Send API of `PASSERELLE_GRAPH_URL` for each
notification, with the rules of `streams.rules.delivery` (the barrier, expiry,
the envelope, the API's answers). The plumbing, here:

- **Order and concurrency.** One customer's notifications are sent one after
  the other, in the partition's order (a chain of tasks per psid); customers
  are served concurrently, up to `concurrency` calls at once. Each Page has its
  own pace and its own pause after a rate-limit answer, so a throttled Page
  holds back only its own customers.
- **Idempotence.** The journal (`streams.tools.delivered`) records each call
  before it is made and each outcome after: a notification done is never sent
  again, across restarts (`DUPLICATE`). Offsets are committed every
  `COMMIT_EVERY_S`, up to the oldest record not yet done, after the journal is
  synced and the reports are written: a kill -9 repeats at most the calls in
  flight, and the next start counts them (`passerelle_delivery_uncertain_total`).
  A rebalance finishes and commits what was read first, and starts nothing meanwhile.
- **Reports.** Every outcome goes to `messenger.feedback.v1` (at least once);
  what cannot be decoded, or is not sent after `MAX_TRIES` tries or for a
  refused token, also to the DLQ (coordinates and id; no bytes).
- **Tokens.** One file per Page (`streams.tools.delivered.PageTokens`), sent in
  the Authorization header, never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable
from typing import Any

import aiohttp
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams import kafka, model
from streams.catalog import DLQ, FEEDBACK, NOTIFICATIONS
from streams.codec import Codec
from streams.errors import CodecError
from streams.metrics import DeliveryMetrics
from streams.rules import delivery as rules
from streams.settings import DeliverySettings, Settings
from streams.stream import Source, dead_letter_headers
from streams.tools.delivered import Journal, Offsets, PageTokens

log = logging.getLogger(__name__)

GROUP = "messenger-deliver"
COMMIT_EVERY_S = 0.5
READ_AHEAD = 8
"""Notifications read and not yet done, at most this many per call in flight (at least
`MIN_PENDING`): enough to keep every call busy across customers and Pages, few enough
that a rebalance's drain (everything read must be done first) takes seconds."""
MIN_PENDING = 256
DRAIN_TIMEOUT_S = 30.0


def now_ms() -> int:
    return int(time.time() * 1000)


class Deliverer:
    """One delivery worker: a consumer, a producer for reports, an HTTP client."""

    def __init__(
        self,
        settings: Settings,
        delivery: DeliverySettings,
        codec: Codec,
        metrics: DeliveryMetrics,
        topic: str = NOTIFICATIONS,
        group: str = GROUP,
        start: str = "earliest",
    ) -> None:
        self.settings, self.delivery, self.codec, self.metrics = settings, delivery, codec, metrics
        self.topic, self.group, self.start = topic, group, start
        self.journal = Journal(delivery.state_dir, now_ms())
        metrics.uncertain.inc(self.journal.uncertain)
        self.tokens = PageTokens(delivery.page_tokens_dir, metrics)
        self.budgets: dict[str, rules.PageBudget] = {}
        self.offsets = Offsets()
        self.chains: dict[bytes, asyncio.Task[None]] = {}
        self.room = asyncio.Semaphore(max(MIN_PENDING, READ_AHEAD * delivery.concurrency))
        self.calls = asyncio.Semaphore(delivery.concurrency)
        self.sent: list[Awaitable[Any]] = []
        self.ready = asyncio.Event()
        self.revoking = False
        """Partitions are being revoked: nothing more is scheduled until they are assigned."""

    async def run(self, stop: asyncio.Event) -> None:
        if self.journal.uncertain:
            log.warning("%d calls were in flight at the last stop", self.journal.uncertain)
        consumer = kafka.consumer(
            self.settings,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset=self.start,
            max_poll_records=500,
        )
        self.producer = kafka.producer(self.settings, linger_ms=5)
        timeout = aiohttp.ClientTimeout(total=self.delivery.timeout_ms / 1000)
        connector = aiohttp.TCPConnector(limit=self.delivery.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as self.http:
            try:
                await self.producer.start()
                await consumer.start()
                needed = [self.topic, FEEDBACK, DLQ]
                await kafka.check_topics(consumer, needed, "run `passerelle topics create`")
                consumer.subscribe([self.topic], listener=_Revoked(self, consumer))
                log.info("delivering %s (group %s)", self.topic, self.group)
                await self._loop(consumer, stop)
                await self._drain()  # a clean stop: what was read is finished and committed
                await self._commit(consumer)
            finally:
                await consumer.stop()
                await self.producer.stop()
                self.journal.close()

    async def _loop(self, consumer: Any, stop: asyncio.Event) -> None:
        committed = time.monotonic()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            self.ready.set()
            for tp, records in batches.items():
                for record in records:
                    await self.room.acquire()
                    if self.revoking:  # dropped unread: its offset is not committed, so
                        self.room.release()  # its partition's next owner reads it again
                        break
                    self._schedule(tp, record)
            if time.monotonic() - committed >= COMMIT_EVERY_S and not self.revoking:
                await self._commit(consumer)
                committed = time.monotonic()

    def _schedule(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        slot = self.offsets.read(tp, record.offset)
        self.metrics.in_flight.inc()
        try:
            n: model.Notification = self.codec.decode(model.NOTIFICATION, record.value)  # type: ignore[assignment]  # decoded Notification
        except CodecError as exc:
            self._dead(record, exc.reason, str(exc), None)
            self.metrics.child(self.metrics.deliveries, "unknown", "UNREADABLE").inc()
            self._finished(slot)
            return
        if n["kind"] == "CONSENT_ENDED":  # the barrier holds from the moment it is read
            self.journal.end(n["consent_id"], now_ms())
        key = record.key or b""
        previous = self.chains.get(key)
        task = asyncio.create_task(self._in_turn(previous, n, record, slot))
        self.chains[key] = task
        task.add_done_callback(lambda done: self._unchain(key, done))

    def _unchain(self, key: bytes, done: asyncio.Task[None]) -> None:
        """A customer's last queued notification is done: forget the chain."""
        if self.chains.get(key) is done:
            del self.chains[key]

    async def _in_turn(
        self,
        previous: asyncio.Task[None] | None,
        n: model.Notification,
        record: ConsumerRecord[bytes, bytes],
        slot: list[int],
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self.deliver(n, record)
        except Exception:  # never stop on one record
            where = (record.topic, record.partition, record.offset)
            log.exception("delivery failed on %s-%d@%d", *where)
            self.metrics.child(self.metrics.deliveries, n["page_id"], "FAILED").inc()
            self._dead(record, "PROCESSING_ERROR", "an error in the delivery worker", n)
        finally:
            self._finished(slot)

    def _finished(self, slot: list[int]) -> None:
        self.offsets.done(slot)
        self.metrics.in_flight.dec()
        self.room.release()

    async def deliver(self, n: model.Notification, record: ConsumerRecord[bytes, bytes]) -> None:
        """Send one notification, until an outcome: delivered, refused, dropped, or given up."""
        page, tries = n["page_id"], 0
        while True:
            skip = rules.before_send(n, now_ms(), self.journal.ended, self.journal.delivered)
            if skip == "DUPLICATE":  # not sent again; its report may have died with a kill
                self.metrics.child(self.metrics.deliveries, page, "DUPLICATE").inc()
                at, outcome, message_id = self.journal.delivered[n["notification_id"]]
                answer = rules.Answer("done", message_id=None if message_id == "-" else message_id)
                if outcome:  # an outcome the journal wrote
                    self._tell(rules.report(n, outcome, answer, at), n["psid"])  # type: ignore[arg-type]
                return
            if skip is not None:
                return self._report(n, skip)
            token = self.tokens.get(page, time.monotonic())
            if token is None:
                self._dead(record, "PAGE_STOPPED", "no usable access token for the page", n)
                return self._report(n, "PAGE_STOPPED")
            budget = self.budgets.setdefault(page, rules.PageBudget(self.delivery.page_rate))
            wait = budget.take(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            async with self.calls:
                self.journal.sending(n["notification_id"])
                answer = await self._call(page, token, n)
            if answer.action == "done":
                budget.calm()
                return self._report(n, answer.outcome or "DELIVERED", answer)
            if answer.action == "throttle":
                self.metrics.child(self.metrics.retries, page, "throttled").inc()
                budget.throttled(time.monotonic())
                continue
            if answer.action == "stop_page":
                self.tokens.refused(page)
                continue  # the next turn finds no token: dead-lettered, as the Page's next ones
            tries += 1
            if tries >= rules.MAX_TRIES:
                detail = f"not sent after {tries} tries (last: {answer.code}/{answer.subcode})"
                self._dead(record, "SEND_FAILED", detail, n)
                return self._report(n, "FAILED", answer)
            reason = "timeout" if answer.timed_out else "server_error"
            self.metrics.child(self.metrics.retries, page, reason).inc()
            await asyncio.sleep(rules.backoff(tries, random.random()))

    async def _call(self, page: str, token: str, n: model.Notification) -> rules.Answer:
        url = f"{self.delivery.graph_url}/{rules.SEND_API_VERSION}/{page}/messages"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self.http.post(url, json=rules.send_request(n), headers=headers) as reply:
                try:
                    body = await reply.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError):
                    body = None
                return rules.classify(reply.status, body)
        except (TimeoutError, aiohttp.ClientError):
            return rules.TIMED_OUT

    def _report(
        self, n: model.Notification, outcome: model.DeliveryOutcome, answer: Any = None
    ) -> None:
        at, message_id = now_ms(), answer.message_id if answer is not None else None
        self.journal.done(n["notification_id"], at, outcome, message_id)
        self.metrics.child(self.metrics.deliveries, n["page_id"], outcome).inc()
        if outcome == "DELIVERED":
            self.metrics.latency.observe(max(0.0, (at - n["created_at"]) / 1000))
        self._tell(rules.report(n, outcome, answer, at), n["psid"])

    def _tell(self, report: model.DeliveryReport, psid: str) -> None:
        self._write(FEEDBACK, self.codec.encode(model.DELIVERY_REPORT, report), psid.encode())

    def _dead(
        self,
        record: ConsumerRecord[bytes, bytes],
        reason: str,
        detail: str,
        n: model.Notification | None,
    ) -> None:
        """A dead letter: why, where, which notification, how long; not the message."""
        headers = dead_letter_headers(reason, detail, Source.of(record), len(record.value or b""))
        if n is not None:
            headers += (("notification-id", n["notification_id"].encode()),)
        self._write(DLQ, None, record.key, headers)

    def _write(self, topic: str, value: bytes | None, key: bytes | None, headers: Any = ()) -> None:
        """Write a record; `_commit` waits until it is written, before any offset moves."""

        async def write() -> None:
            written = await self.producer.send(topic, value, key=key, headers=list(headers))
            await written

        self.sent.append(asyncio.ensure_future(write()))

    async def _commit(self, consumer: Any) -> None:
        """Reports written, journal synced, then the offsets of what is done."""
        sent, self.sent = self.sent, []
        await asyncio.gather(*sent)  # each a future of the record's write: awaited once
        self.journal.sync(now_ms())
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self.offsets.committable().items() if tp in assigned}
        if offsets:
            await consumer.commit(offsets)

    async def _drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Let what is queued finish (a rebalance or a stop), within `timeout`."""
        chains = list(self.chains.values())
        if chains:
            await asyncio.wait(chains, timeout=timeout)


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Before partitions go to another worker: finish what was read, commit it."""

    def __init__(self, worker: Deliverer, consumer: Any) -> None:
        self.worker, self.consumer = worker, consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        started = time.monotonic()
        self.worker.revoking = True
        await self.worker._drain()
        await self.worker._commit(self.consumer)
        self.worker.offsets.forget(set(revoked))
        seconds = time.monotonic() - started
        log.info("%d partitions revoked; drained and committed in %.1f s", len(revoked), seconds)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.revoking = False  # each one is read from its committed offset
        log.info("%d partitions assigned", len(assigned))
