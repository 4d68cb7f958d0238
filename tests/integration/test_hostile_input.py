"""Hostile input on a bank's topic: 5 000 seeded payloads (random bytes, garbled and
truncated frames, other subjects' schema ids, absurd values, huge strings, values
up to the topic's 1 MiB limit, tombstones). The worker stays up, every payload
lands in the DLQ with the reason its kind calls for, and the bank reconciles."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from streams import catalog, kafka, limits, model
from streams.codec import Codec
from streams.kafka import read_all
from streams.redact import KeyedHasher
from streams.rules import ingest as rules
from streams.settings import DEV_HASH_KEY, Settings
from streams.tools import reconcile
from tests import samples
from tests.conftest import fresh_app, unique_bank
from tests.integration.harness import Worker, metrics_text, page

PAYLOADS = 5_000
# Reasons a payload of random bytes may get: whatever its first bytes happen to say.
ANY_DECODE_FAILURE = {
    "TRUNCATED_FRAME",
    "BAD_MAGIC_BYTE",
    "UNKNOWN_SCHEMA_ID",
    "WRONG_SUBJECT",
    "BODY_MISMATCH",
}
Payload = tuple[bytes | None, bytes | None, set[str]]


def hostile(codec: Codec, bank: str, rng: random.Random) -> list[Payload]:
    """PAYLOADS payloads, each with the DLQ reasons it may get (one, where it is certain)."""
    now = int(time.time() * 1000)

    def tx(**changes: object) -> dict[str, object]:
        return {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": "FR76FUZZ",
            "transaction_id": f"fuzz-{rng.randrange(10**9)}",
            "booked_at": now,
            **changes,
        }

    def frame(**changes: object) -> bytes:
        return codec.encode(model.TRANSACTION, tx(**changes))

    key = b"FR76FUZZ"
    kinds: list[Callable[[], Payload]] = [
        lambda: (key, rng.randbytes(rng.randrange(0, 600)), ANY_DECODE_FAILURE),
        lambda: (
            key,
            frame()[:5] + rng.randbytes(rng.randrange(1, 300)),
            ANY_DECODE_FAILURE
            | {
                "KEY_MISMATCH",
                "BANK_MISMATCH",
                "BAD_CURRENCY",
                "BAD_AMOUNT",
                "BAD_TIMESTAMP",
                "FIELD_TOO_LONG",
            },
        ),
        lambda: (
            key,
            (f := frame())[: rng.randrange(0, len(f))],
            {"TRUNCATED_FRAME", "BODY_MISMATCH"},
        ),
        lambda: (key, frame() + rng.randbytes(rng.randrange(1, 50)), {"BODY_MISMATCH"}),
        lambda: (key, codec.encode(model.NOTIFICATION, samples.NOTIFICATION), {"WRONG_SUBJECT"}),
        lambda: (key, codec.encode(model.CONSENT, samples.CONSENT), {"WRONG_SUBJECT"}),
        lambda: (key, frame(amount_minor=rng.choice([10**15, -(10**18)])), {"BAD_AMOUNT"}),
        lambda: (key, frame(currency=rng.choice(["ZZZ", "eur", "€€€", "EURO"])), {"BAD_CURRENCY"}),
        lambda: (
            key,
            frame(booked_at=rng.choice([0, -1, now + 10 * 86_400_000, 2**62])),
            {"BAD_TIMESTAMP"},
        ),
        lambda: (key, frame(bank_id="someone-else"), {"BANK_MISMATCH"}),
        lambda: (b"FR76OTHER", frame(), {"KEY_MISMATCH"}),
        lambda: (None, frame(), {"KEY_MISMATCH"}),
        lambda: (key, frame(merchant_name="x" * rng.randrange(257, 40_000)), {"FIELD_TOO_LONG"}),
        lambda: (key, frame(description="\u202e" * rng.randrange(513, 5_000)), {"FIELD_TOO_LONG"}),
        lambda: (key, None, {"NO_VALUE"}),
        lambda: (key, b"", {"TRUNCATED_FRAME"}),
    ]
    payloads = [rng.choice(kinds)() for _ in range(PAYLOADS - 12)]
    # Values up to the topic's limit: refused unread, kept as their size (the bank has them).
    limit = limits.MAX_INPUT_BYTES - 512  # the record batch's own overhead
    sizes = [65 * 1024, 100_000, 500_000, limit] * 3
    payloads += [(key, rng.randbytes(size), {"TOO_LARGE"}) for size in sizes]
    return payloads


HASHER = KeyedHasher(DEV_HASH_KEY, "k0")  # the worker's


async def test_five_thousand_hostile_payloads_all_land_in_the_dlq_with_their_reason(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    bank = unique_bank()
    settings = await fresh_app(settings, "fuzz", [bank])
    app_id = settings.app_id
    topic = catalog.bank_topic_name(bank)
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()

    payloads = hostile(codec, bank, random.Random(20261129))
    expected: dict[tuple[int, int], set[str]] = {}
    originals: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = {}
    producer = kafka.producer(settings, linger_ms=5)
    await producer.start()
    try:
        for key, value, reasons in payloads:
            sent = await producer.send_and_wait(topic, value, key)
            expected[(sent.partition, sent.offset)] = reasons
            originals[(sent.partition, sent.offset)] = (key, value)
    finally:
        await producer.stop()

    counts = (await reconcile.wait_balanced(settings, codec, [bank], 240))[bank]
    assert worker.alive() and page(worker, "/healthz")[0] == 200
    assert counts.balanced, counts.line(bank)
    assert counts.ingested == PAYLOADS and sum(counts.dlq.values()) == PAYLOADS, counts.line(bank)
    assert counts.forwarded == 0 and not counts.withheld

    letters = [
        r
        for r in await read_all(settings, catalog.DLQ)
        if dict(r.headers)["source-topic"] == topic.encode()
    ]
    got: dict[tuple[int, int], str] = {}
    for letter in letters:
        h = dict(letter.headers)
        where = (int(h["source-partition"]), int(h["source-offset"]))
        got[where] = h["reason"].decode()
        key, value = originals[where]
        named = rules.named_account(bank, key)
        if named is None or h["reason"] == b"TOO_LARGE":  # its size, never its bytes
            assert letter.value is None and h["size"] == str(len(value or b"")).encode(), where
        else:  # sealed for its account, keyed by the account's hash, never in clear
            assert letter.key == HASHER.account(bank, named.decode().split(":", 1)[1]).encode()
            assert h["sealed"] == b"aes-256-gcm" and letter.value != value, where
            assert len(letter.value) == len(value or b"") + 30, where  # S1, nonce, tag
    assert set(got) == set(expected), "one dead letter per payload"
    wrong = {w: (got[w], expected[w]) for w in expected if got[w] not in expected[w]}
    assert not wrong, list(wrong.items())[:5]
    print(sorted(Counter(got.values()).items()))

    scraped = metrics_text(worker)
    dlq_lines = [
        ln for ln in scraped.splitlines() if ln.startswith(f'passerelle_dlq_total{{bank="{bank}"')
    ]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in dlq_lines) == PAYLOADS
    assert worker.stop() == 0
