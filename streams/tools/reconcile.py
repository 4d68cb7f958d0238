"""Reconciliation: every record a bank wrote is accounted for, once.

Per bank: `in` (records in its ingest topic) = `forwarded` + `withheld` (the
audit topic's Decisions) + `dlq` (dead letters whose source is that topic).
Read from the topics themselves, read_committed, so it checks the pipeline
from outside. `since` (the ingest topics' end offsets taken with `marks`)
counts only what a bank wrote after that moment: one run on a reused broker.

With `feed`, the counts come from each bank's own outcome feed
(`bank.<id>.outcomes.v1`) instead of the audit trail and the DLQ: what a bank
runs with its own credentials, which may read nothing else.

`deliveries` counts, per bank, what the delivery workers reported of its
notifications (`messenger.feedback.v1`): delivered, and each way of not.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from streams import feeds, kafka, model
from streams.catalog import AUDIT, DLQ, FEEDBACK, bank_topic_name, outcomes_topic_name
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
    settings: Settings,
    codec: Codec,
    banks: list[str],
    since: Marks | None = None,
    feed: bool = False,
) -> dict[str, BankCounts]:
    """Each bank's counts, from the audit trail and the DLQ (every bank's: an operator's
    view), or with `feed` from each bank's own outcome feed (what a bank's own
    credentials may read)."""
    counts = {bank: BankCounts() for bank in banks}
    since = since or {}

    def counted(bank: str, partition: int, offset: int) -> bool:
        mark = since.get(bank, {}).get(partition)
        return mark is None or offset >= mark

    for bank in banks:
        counts[bank].ingested = await ingested(settings, bank_topic_name(bank), since.get(bank))
    outcomes = _from_feeds(settings, codec, banks) if feed else _from_audit(settings, codec)
    seen: set[tuple[str, int, int]] = set()  # at_least_once may write an outcome twice
    async for bank, outcome in outcomes:
        where = (bank, outcome["source_partition"], outcome["source_offset"])
        if bank not in counts or where in seen or not counted(*where):
            continue
        seen.add(where)
        if outcome["outcome"] == "FORWARDED":
            counts[bank].forwarded += 1
        elif outcome["outcome"] == "WITHHELD":
            counts[bank].withheld[outcome["reason"] or "?"] += 1
        else:
            counts[bank].dlq[outcome["reason"] or "?"] += 1
    return counts


async def _from_audit(settings: Settings, codec: Codec) -> AsyncIterator[feeds.Told]:
    """Every bank's outcomes, as the outcomes stage reads them: the audit trail's
    Decisions and the DLQ's dead letters of banks' records."""
    for record in await read_all(settings, AUDIT):
        told = feeds.decided(codec, record)
        if told is not None:
            yield told
    for record in await read_all(settings, DLQ):
        told = feeds.dead_lettered(record)
        if told is not None:
            yield told


async def _from_feeds(
    settings: Settings, codec: Codec, banks: list[str]
) -> AsyncIterator[feeds.Told]:
    """Each bank's outcomes, from its own feed (a record there that is not one is skipped)."""
    for bank in banks:
        hint = f"`topics create --bank {bank}` makes it, or these credentials may not read it"
        for record in await read_all(settings, outcomes_topic_name(bank), missing=hint):
            try:
                yield bank, codec.decode(model.BANK_OUTCOME, record.value)  # type: ignore[misc]  # the codec returns the schema's dict
            except CodecError:
                continue


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
    feed: bool = False,
) -> dict[str, BankCounts]:
    """Reconcile until every bank balances or `timeout_s` passes; the last counts either way.

    A bank with more outcomes than records will never balance: that returns at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = await reconcile(settings, codec, banks, since, feed)
        done = all(c.balanced for c in counts.values())
        over = any(c.accounted > c.ingested for c in counts.values())
        if done or over or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(1.0)


async def report(
    settings: Settings, codec: Codec, banks: list[str], wait_s: float, feed: bool
) -> tuple[list[str], bool]:
    """`passerelle reconcile`'s lines, and whether every bank balanced. From a bank's
    feed, no delivery line: a bank's credentials may not read the delivery reports."""
    counts = await wait_balanced(settings, codec, banks, wait_s, feed=feed)
    lines = [c.line(bank) for bank, c in sorted(counts.items())]
    if not feed:
        delivered = await deliveries(settings, codec, banks)
        lines += [delivery_line(bank, delivered[bank]) for bank in sorted(delivered)]
    return lines, all(c.balanced for c in counts.values())
