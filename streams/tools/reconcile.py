"""Reconciliation: every record a bank wrote is accounted for, once.

Per bank: `in` (records in its ingest topic) = `forwarded` + `withheld` (the
audit topic's Decisions) + `dlq` (dead letters whose source is that topic).
Read from the topics themselves, read_committed, so it checks the pipeline
from outside. `since` (the ingest topics' end offsets taken with `marks`)
counts only what a bank wrote after that moment: one run on a reused broker.

`deliveries` counts, per bank, what the delivery workers reported of its
notifications (`messenger.feedback.v1`): delivered, and each way of not.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from streams import kafka, model
from streams.catalog import AUDIT, DLQ, FEEDBACK, bank_of_topic, bank_topic_name
from streams.codec import Codec
from streams.errors import CodecError
from streams.kafka import read_all
from streams.settings import Settings
from streams.stream import Source


@dataclass
class BankCounts:
    ingested: int = 0
    forwarded: int = 0
    withheld: Counter[str] = field(default_factory=Counter)
    dlq: Counter[str] = field(default_factory=Counter)

    @property
    def accounted(self) -> int:
        return self.forwarded + sum(self.withheld.values()) + sum(self.dlq.values())

    @property
    def balanced(self) -> bool:
        return self.ingested == self.accounted

    def line(self, bank: str) -> str:
        withheld = ", ".join(f"{k} {v}" for k, v in sorted(self.withheld.items())) or "none"
        dlq = ", ".join(f"{k} {v}" for k, v in sorted(self.dlq.items())) or "none"
        verdict = "balanced" if self.balanced else f"OFF BY {self.ingested - self.accounted}"
        return (
            f"{bank}: in {self.ingested} = forwarded {self.forwarded} + withheld "
            f"{sum(self.withheld.values())} ({withheld}) + dlq {sum(self.dlq.values())} "
            f"({dlq}): {verdict}"
        )


Marks = dict[str, dict[int, int]]
"""Per bank, per partition of its ingest topic: the first offset that counts."""


async def _offsets(settings: Settings, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The topic's first and end offsets, by partition (none if it does not exist)."""
    consumer = kafka.consumer(settings, group_id=None)
    try:
        await consumer.start()
        tps = await kafka.partitions_of(consumer, topic)
        if not tps:
            return {}, {}
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        return {tp.partition: o for tp, o in starts.items()}, {
            tp.partition: o for tp, o in ends.items()
        }
    finally:
        await consumer.stop()


async def marks(settings: Settings, banks: list[str]) -> Marks:
    """Where the banks' ingest topics end now: what a later `reconcile(since=…)` starts at."""
    return {bank: (await _offsets(settings, bank_topic_name(bank)))[1] for bank in banks}


async def ingested(settings: Settings, topic: str, since: dict[int, int] | None = None) -> int:
    starts, ends = await _offsets(settings, topic)
    since = since or {}
    return sum(end - max(starts[p], since.get(p, 0)) for p, end in ends.items())


async def reconcile(
    settings: Settings, codec: Codec, banks: list[str], since: Marks | None = None
) -> dict[str, BankCounts]:
    counts = {bank: BankCounts() for bank in banks}
    since = since or {}

    def counted(bank: str, partition: int, offset: int) -> bool:
        mark = since.get(bank, {}).get(partition)
        return mark is None or offset >= mark

    for bank in banks:
        counts[bank].ingested = await ingested(settings, bank_topic_name(bank), since.get(bank))
    for record in await read_all(settings, AUDIT):
        try:
            subject, decision = codec.decode_any(record.value)
        except CodecError:
            continue
        bank = decision["bank_id"]
        if subject != model.DECISION or bank not in counts:
            continue
        if bank_of_topic(decision["source_topic"]) != bank:
            continue
        if not counted(bank, decision["source_partition"], decision["source_offset"]):
            continue
        if decision["outcome"] == "FORWARDED":
            counts[bank].forwarded += 1
        else:
            counts[bank].withheld[decision["reason"]] += 1
    for record in await read_all(settings, DLQ):
        source = Source.carried(record)  # where the bank's record was, as dead_letter wrote
        sender = bank_of_topic(source.topic) if source else None
        if (
            source is None
            or sender not in counts
            or not counted(sender, source.partition, source.offset)
        ):
            continue
        counts[sender].dlq[dict(record.headers).get("reason", b"?").decode()] += 1
    return counts


async def deliveries(
    settings: Settings, codec: Codec, banks: list[str], since_ms: int = 0
) -> dict[str, Counter[str]]:
    """Per bank, the outcome of each notification reported at or after `since_ms` (a
    notification reported twice, after a delivery worker's restart, counts once)."""
    last: dict[str, tuple[str, str]] = {}  # reports are at least once: one per notification
    for record in await read_all(settings, FEEDBACK):
        try:
            report = codec.decode(model.DELIVERY_REPORT, record.value)
        except CodecError:
            continue
        if report["bank_id"] in banks and report["at"] >= since_ms:
            last[report["notification_id"]] = (report["bank_id"], report["outcome"])
    counts: dict[str, Counter[str]] = {bank: Counter() for bank in banks}
    for bank, outcome in last.values():
        counts[bank][outcome] += 1
    return counts


def delivery_line(bank: str, outcomes: Counter[str]) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "none reported"
    return f"delivery {bank}: {shown}"


async def wait_balanced(
    settings: Settings,
    codec: Codec,
    banks: list[str],
    timeout_s: float,
    since: Marks | None = None,
) -> dict[str, BankCounts]:
    """Reconcile until every bank balances or `timeout_s` passes; the last counts either way.

    A bank with more outcomes than records will never balance: that returns at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = await reconcile(settings, codec, banks, since)
        done = all(c.balanced for c in counts.values())
        over = any(c.accounted > c.ingested for c in counts.values())
        if done or over or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(1.0)
