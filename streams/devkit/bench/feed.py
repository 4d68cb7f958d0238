"""The bench's feed: a bank's accounts, their consents, transactions sent fast, and the
baseline that passes them through bare aiokafka."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from streams import catalog, kafka, model
from streams.agents import outcomes
from streams.codec import Codec
from streams.devkit.bench.report import Throughput
from streams.settings import Settings
from streams.tools import simulate

CONSENTING = 0.8
"""The share of accounts with a consent."""


@dataclass(frozen=True)
class Population:
    bank: simulate.Bank
    accounts: list[simulate.Account]

    @property
    def consenting(self) -> list[simulate.Account]:
        return [a for a in self.accounts if a.consent is not None]

    def notified(self, first: int, count: int) -> int:
        """How many of the transactions `first` … `first + count - 1` (`offer` takes the
        accounts in turn) are to consenting accounts: the notifications they make."""
        n = len(self.accounts)
        return sum(self.accounts[(first + i) % n].consent is not None for i in range(count))


def population(bank_id: str, size: int, seed: int) -> Population:
    rng = random.Random(seed)
    bank = simulate.Bank(bank_id, "fr-FR", "Europe/Paris", "EUR", "105000000000009")
    accounts = simulate.accounts(rng, size, [bank])
    now = int(time.time() * 1000)
    for account in accounts:
        if rng.random() < CONSENTING:
            account.consent = simulate.consent_for(rng, account, now)
            account.consent["permissions"] = sorted(
                {"TRANSACTIONS", *account.consent["permissions"]}
            )
    return Population(bank, accounts)


def transaction(codec: Codec, account: simulate.Account, n: int, booked_at: int) -> bytes:
    merchant, mcc, typical = simulate.MERCHANTS[n % len(simulate.MERCHANTS)]
    account.balance -= typical
    record: model.Transaction = {
        "transaction_id": f"bench-{account.account_id[-10:]}-{n}",
        "bank_id": account.bank.bank_id,
        "account_id": account.account_id,
        "status": "BOOKED",
        "pending_transaction_id": None,
        "reversed_transaction_id": None,
        "amount_minor": -typical,
        "currency": account.bank.currency,
        "booked_at": booked_at,
        "merchant_name": merchant,
        "mcc": mcc,
        "description": None,
        "balance_after_minor": account.balance,
        "channel": "CARD",
    }
    return codec.encode(model.TRANSACTION, record)


async def send_all(settings: Settings, records: Iterable[tuple[str, bytes, bytes]]) -> int:
    """Produce fast: no await per record, acks gathered in chunks."""
    producer = kafka.producer(settings, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    sent = 0
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def send_consents(settings: Settings, codec: Codec, pop: Population) -> int:
    return await send_all(
        settings,
        (
            (catalog.CONSENTS, f"{a.bank.bank_id}:{a.account_id}".encode(),
             codec.encode(model.CONSENT, a.consent or {}))
            for a in pop.consenting
        ),
    )  # fmt: skip


def transactions(codec: Codec, pop: Population, count: int) -> Iterable[tuple[str, bytes, bytes]]:
    topic = catalog.bank_topic_name(pop.bank.bank_id)
    now = int(time.time() * 1000)
    for n in range(count):
        account = pop.accounts[n % len(pop.accounts)]
        yield topic, account.account_id.encode(), transaction(codec, account, n, now)


async def passthrough(
    settings: Settings, source: str, target: str, records: int, group: str, waits: bool = True
) -> Throughput:
    """Bare aiokafka: consume → produce without awaiting each send → await the poll's
    acknowledgements → commit per poll: the ratio's reference, a pipeline's round without
    its work. Without `waits`, consume → send only (one flush and commit at the end):
    what the client does unhindered, stated beside it so the reference is clear."""
    consumer = kafka.consumer(
        settings, source, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    producer = kafka.producer(settings, linger_ms=0, max_batch_size=kafka.BATCH_BYTES)
    await producer.start()
    await consumer.start()
    done, started = 0, 0.0
    try:
        while done < records:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not started and batches:
                started = time.monotonic()
            futures = [
                await producer.send(target, r.value, r.key) for rs in batches.values() for r in rs
            ]
            if waits:
                await asyncio.gather(*futures)
            if batches and waits:
                await consumer.commit()
            done += len(futures)
        if not waits:
            await producer.flush()
            await consumer.commit()
        name = "bare aiokafka passthrough" if waits else "bare aiokafka, no per-poll waits"
        return Throughput(name, done, time.monotonic() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def outcomes_from_now(
    settings: Settings, app_id: str, topics: tuple[str, ...] = outcomes.READS
) -> None:
    """Have the app's outcomes stage read the audit trail and the DLQ from their ends as
    they are now (before its workers start). Both topics are every app's, and a new
    app's group reads them from the start: each phase's worker also turned every
    earlier phase's decisions into outcomes, on the CPU and the loop the phase measures
    (a latency phase's outcomes stage went through rounds of 13 700 old records).
    `topics`: the ones the outcomes stage reads (a test gives its own)."""
    reader = kafka.consumer(settings, group_id=f"{app_id}-outcomes", enable_auto_commit=False)
    await reader.start()
    try:
        tps = [tp for t in topics for tp in await kafka.partitions_of(reader, t)]
        reader.assign(tps)
        await reader.commit(await reader.end_offsets(tps))
    finally:
        await reader.stop()
