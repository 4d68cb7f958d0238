"""A realistic bank feed: several banks, accounts, consents, and the faults real feeds have.

Seeded, so a run can be repeated. Per bank, accounts with running balances;
about 80 % consent (various permissions, thresholds, quiet hours, digests).
Events: card payments at French and British merchants (some PENDING then
BOOKED), salaries, rent, cash, fees, reversals, resent duplicates, and a few
malformed frames and spoofed bank ids; mid-run, some consents are revoked.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams import kafka, model
from streams.catalog import CONSENTS, bank_topic_name
from streams.codec import Codec
from streams.settings import Settings

Say = Callable[[str], None]


@dataclass(frozen=True)
class Bank:
    bank_id: str
    locale: str
    timezone: str
    currency: str
    page_id: str


BANKS = (
    Bank("banque-alpine", "fr-FR", "Europe/Paris", "EUR", "105000000000001"),
    Bank("credit-breton", "fr-FR", "Europe/Paris", "EUR", "105000000000002"),
    Bank("thames-bank", "en-GB", "Europe/London", "GBP", "105000000000003"),
)
# (merchant, MCC, typical amount in minor units)
MERCHANTS = (
    ("Carrefour Market", "5411", 4_500),
    ("Boulangerie Pâtissière", "5462", 650),
    ("SNCF Connect", "4112", 3_900),
    ("TotalEnergies", "5541", 6_000),
    ("Fnac", "5732", 12_000),
    ("Le Bistrot du Coin", "5812", 2_400),
    ("Pharmacie Centrale", "5912", 1_800),
    ("Tesco", "5411", 3_200),
    ("Pret A Manger", "5814", 900),
    ("Cinéma Pathé", "7832", 1_200),
)
DAY_MS = 86_400_000
PER_BANK = 40


@dataclass
class Account:
    bank: Bank
    account_id: str
    psid: str
    balance: int
    consent: dict[str, Any] | None = None
    history: list[str] = field(default_factory=list)


@dataclass
class Feed:
    """What was sent, per bank and per kind: the other side of the reconciliation."""

    sent: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)


def accounts(rng: random.Random, per_bank: int, banks: Sequence[Bank]) -> list[Account]:
    out = []
    for bank in banks:
        for n in range(per_bank):
            account_id = f"{bank.bank_id[:2].upper()}76{rng.randrange(10**12):012d}{n:04d}"
            psid = f"{rng.randrange(10**16, 10**17)}"
            out.append(Account(bank, account_id, psid, rng.randrange(50_000, 500_000)))
    return out


def draw(rng: random.Random, per_bank: int, banks: Sequence[Bank], now: int) -> list[Account]:
    """The accounts of a run, about 80 % with a consent: the same for the same seed."""
    population = accounts(rng, per_bank, banks)
    for account in population:
        if rng.random() < 0.8:
            account.consent = consent_for(rng, account, now)
    return population


def consent_for(rng: random.Random, account: Account, now: int) -> dict[str, Any]:
    perms = ["TRANSACTIONS", *rng.sample(["BALANCES", "SUMMARIES", "ALERTS"], rng.randint(1, 3))]
    return {
        "consent_id": f"cns-{account.account_id[-8:]}-{rng.randrange(10**6)}",
        "bank_id": account.bank.bank_id,
        "account_id": account.account_id,
        "psid": account.psid,
        "page_id": account.bank.page_id,
        "status": "VALID",
        "permissions": perms,
        "valid_until": now + 90 * DAY_MS,
        "transaction_from": None,
        "transaction_to": None,
        "locale": account.bank.locale,
        "timezone": account.bank.timezone,
        "quiet_hours": {"start": 22 * 3_600_000, "end": 7 * 3_600_000}
        if rng.random() < 0.5
        else None,
        "large_amount_minor": rng.choice([None, 10_000, 50_000]),
        "low_balance_minor": rng.choice([None, 20_000, 50_000]),
        "daily_digest": "SUMMARIES" in perms,
        "updated_at": now,
    }


def transaction(
    rng: random.Random, account: Account, n: int, now: int, run_id: int = 0
) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.05:
        amount, merchant, mcc, channel, desc = (
            rng.randrange(180_000, 320_000),
            "Employeur SA",
            None,
            "TRANSFER",
            "Salaire",
        )
    elif roll < 0.08:
        amount, merchant, mcc, channel, desc = (
            -rng.randrange(60_000, 140_000),
            "Agence Immo",
            None,
            "DIRECT_DEBIT",
            "Loyer",
        )
    elif roll < 0.12:
        amount, merchant, mcc, channel, desc = (
            -rng.choice([2_000, 4_000, 6_000]),
            None,
            "6011",
            "ATM",
            "Retrait",
        )
    elif roll < 0.13:
        amount, merchant, mcc, channel, desc = -rng.choice([200, 850]), None, None, "FEE", "Frais"
    else:
        merchant, mcc, typical = rng.choice(MERCHANTS)
        amount, channel, desc = -max(50, int(rng.gauss(typical, typical / 3))), "CARD", None
    account.balance += amount
    return {
        "transaction_id": f"{account.bank.bank_id}-{account.account_id[-6:]}-{run_id}-{n}",
        "bank_id": account.bank.bank_id,
        "account_id": account.account_id,
        "status": "BOOKED",
        "pending_transaction_id": None,
        "reversed_transaction_id": None,
        "amount_minor": amount,
        "currency": account.bank.currency,
        "booked_at": now - rng.randrange(0, 3_600_000),
        "merchant_name": merchant,
        "mcc": mcc,
        "description": desc,
        "balance_after_minor": account.balance,
        "channel": channel,
    }


async def run(
    settings: Settings,
    codec: Codec,
    events: int,
    rate: float,
    per_bank: int = PER_BANK,
    seed: int | None = None,
    banks: Sequence[Bank] = BANKS,
    after_consents: Callable[[set[bytes]], Awaitable[None]] | None = None,
    say: Say = print,
    progress: bool = True,
) -> Feed:
    """Send consents, then `events` bank events at about `rate` per second.

    Each run draws its own seed unless given one; the seed is in every
    transaction id, so two runs never collide and one run can be repeated.
    """
    seed = seed if seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    feed = Feed()
    population = draw(rng, per_bank, banks, now)
    producer = kafka.producer(settings, linger_ms=5)
    try:
        await producer.start()
        for account in population:
            if account.consent is not None:
                value = codec.encode(model.CONSENT, account.consent)
                await producer.send(CONSENTS, value, _key(account))
        await producer.flush()
        if after_consents is not None:  # e.g. wait until the pipeline has read them
            await after_consents({_key(a) for a in population if a.consent is not None})
        consenting = sum(a.consent is not None for a in population)
        n_banks = len(banks)
        say(f"{len(population)} accounts in {n_banks} banks, {consenting} consenting (seed {seed})")
        started, revoked = time.monotonic(), False
        for n in range(events):
            account = rng.choice(population)
            topic, key, value, kind = _event(rng, codec, account, n, now, seed)
            await producer.send(topic, value, key)
            feed.sent[account.bank.bank_id] += 1
            feed.kinds[kind] += 1
            if kind == "pending":  # its BOOKED follows, settling it
                booked = _settle(codec, account, value)
                await producer.send(topic, booked, key)
                feed.sent[account.bank.bank_id] += 1
                feed.kinds["booked"] += 1
            if not revoked and n >= events // 2:
                revoked = True
                feed.kinds["revocations"] = await _revoke(rng, codec, producer, population, now)
            await _pace(started, n + 1, rate)
            if progress and (n + 1) % max(1, events // 10) == 0:
                elapsed = max(time.monotonic() - started, 1e-6)
                say(f"simulate: {n + 1}/{events} events sent, {(n + 1) / elapsed:,.0f}/s")
        await producer.flush()
    finally:
        await producer.stop()
    return feed


def _key(account: Account) -> bytes:
    return f"{account.bank.bank_id}:{account.account_id}".encode()


def _event(
    rng: random.Random, codec: Codec, account: Account, n: int, now: int, run_id: int
) -> tuple[str, bytes, bytes, str]:
    topic = bank_topic_name(account.bank.bank_id)
    key = account.account_id.encode()
    roll = rng.random()
    if roll < 0.005:
        return (
            topic,
            key,
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
            "malformed",
        )
    if roll < 0.01:
        other = rng.choice([b for b in BANKS if b.bank_id != account.bank.bank_id])
        spoof = transaction(rng, account, n, now, run_id) | {"bank_id": other.bank_id}
        return topic, key, codec.encode(model.TRANSACTION, spoof), "spoofed"
    if roll < 0.02 and account.history:
        return topic, key, bytes.fromhex(rng.choice(account.history)), "duplicate"
    if roll < 0.04 and account.history:
        target = codec.decode(model.TRANSACTION, bytes.fromhex(account.history[-1]))
        reversal = target | {
            "transaction_id": f"{target['transaction_id']}-rev",
            "status": "REVERSED",
            "reversed_transaction_id": target["transaction_id"],
            "amount_minor": -target["amount_minor"],
            "pending_transaction_id": None,
        }
        account.balance -= target["amount_minor"]
        reversal["balance_after_minor"] = account.balance
        return topic, key, codec.encode(model.TRANSACTION, reversal), "reversal"
    record = transaction(rng, account, n, now, run_id)
    if record["channel"] == "CARD" and rng.random() < 0.3:
        record |= {"status": "PENDING", "transaction_id": record["transaction_id"] + "-p"}
        value = codec.encode(model.TRANSACTION, record)
        return topic, key, value, "pending"
    value = codec.encode(model.TRANSACTION, record)
    account.history = [*account.history[-20:], value.hex()]
    return topic, key, value, "booked"


def _settle(codec: Codec, account: Account, pending_frame: bytes) -> bytes:
    pending = codec.decode(model.TRANSACTION, pending_frame)
    booked = pending | {
        "status": "BOOKED",
        "transaction_id": pending["transaction_id"][:-2],
        "pending_transaction_id": pending["transaction_id"],
    }
    value = codec.encode(model.TRANSACTION, booked)
    account.history = [*account.history[-20:], value.hex()]
    return value


async def _revoke(
    rng: random.Random, codec: Codec, producer: Any, population: list[Account], now: int
) -> int:
    """Revoke about 10 % of the consents, as customers do mid-stream."""
    chosen = [a for a in population if a.consent is not None and rng.random() < 0.1]
    for account in chosen:
        assert account.consent is not None
        account.consent = account.consent | {"status": "REVOKED_BY_PSU", "updated_at": now + 1}
        await producer.send(CONSENTS, codec.encode(model.CONSENT, account.consent), _key(account))
    return len(chosen)


async def _pace(started: float, sent: int, rate: float) -> None:
    """Wait until `sent` events are due at `rate` a second; yield even when behind."""
    if rate <= 0:
        return
    ahead = sent / rate - (time.monotonic() - started)
    await asyncio.sleep(max(ahead, 0.0))


async def until_in_stream(
    settings: Settings, stream: str, keys: set[bytes], timeout_s: float = 120
) -> None:
    """Wait until every key has reached `stream` (the pipeline's account stream)."""
    from streams.kafka import read_all

    deadline = time.monotonic() + timeout_s
    while not keys <= {r.key for r in await read_all(settings, stream)}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"consents did not reach {stream} within {timeout_s}s")
        await asyncio.sleep(0.5)
