"""Reconciliation: every record a bank wrote is accounted for, once.

Per bank: `in` (records in its ingest topic) = `forwarded` + `withheld` (the
audit topic's Decisions) + `dlq` (dead letters whose source is that topic).
Read from the topics themselves, read_committed, so it checks the pipeline
from outside.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from streams import kafka, model
from streams.catalog import AUDIT, DLQ, bank_of_topic, bank_topic_name
from streams.codec import Codec
from streams.errors import CodecError
from streams.kafka import read_all
from streams.settings import Settings


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


async def ingested(settings: Settings, topic: str) -> int:
    consumer = kafka.consumer(settings, group_id=None)
    try:
        await consumer.start()
        tps = await kafka.partitions_of(consumer, topic)
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


async def reconcile(settings: Settings, codec: Codec, banks: list[str]) -> dict[str, BankCounts]:
    counts = {bank: BankCounts() for bank in banks}
    for bank in banks:
        counts[bank].ingested = await ingested(settings, bank_topic_name(bank))
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
        if decision["outcome"] == "FORWARDED":
            counts[bank].forwarded += 1
        else:
            counts[bank].withheld[decision["reason"]] += 1
    for record in await read_all(settings, DLQ):
        headers = dict(record.headers)
        source = bank_of_topic(headers.get("source-topic", b"").decode())
        if source is not None and source in counts:
            counts[source].dlq[headers.get("reason", b"?").decode()] += 1
    return counts


async def wait_balanced(
    settings: Settings, codec: Codec, banks: list[str], timeout_s: float
) -> dict[str, BankCounts]:
    """Reconcile until every bank balances or `timeout_s` passes; the last counts either way.

    A bank with more outcomes than records will never balance: that returns at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = await reconcile(settings, codec, banks)
        done = all(c.balanced for c in counts.values())
        over = any(c.accounted > c.ingested for c in counts.values())
        if done or over or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(1.0)
