"""The consent promise end to end, with the client banks and messaging teams use.

A bank and a consent authority write with librdkafka (confluent-kafka), a messaging
team reads notifications with it (read_committed), and a real worker sits between:
an unreadable consent withholds its account until a readable one arrives, and a
consent for another recipient ends the previous one before anything reaches the new.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from streams import kafka, model, worker
from streams.catalog import AUDIT, CONSENTS, DLQ, NOTIFICATIONS, Catalog
from streams.codec import Codec
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules import accounts as account_rules
from streams.rules import notify
from streams.settings import DEV_HASH_KEY, Settings
from streams.tools import reconcile
from tests import samples
from tests.conftest import bounded, fresh_app, unique_bank
from tests.integration.harness import Worker, pipeline_worker, until


def librdkafka_send(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    """One record as a bank's own client writes it: librdkafka, idempotent, acks=all."""
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True}
    )
    failures: list[Any] = []

    def delivered(error: Any, _: Any) -> None:
        if error is not None:
            failures.append(error)

    producer.produce(topic, value, key, on_delivery=delivered)
    assert producer.flush(30) == 0 and failures == [], failures


def librdkafka_read(settings: Settings, topic: str, keys: set[bytes], expected: int) -> list[Any]:
    """What a messaging worker sees for these keys: read_committed, from the beginning, in
    a group of its own; until `expected` arrived and 3 s more brought nothing (or 60 s)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"messenger-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: list[Any] = []
    deadline, quiet_until = time.monotonic() + 60, None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None and message.key() in keys:
                seen.append(message)
            if len(seen) >= expected:
                quiet_until = quiet_until or time.monotonic() + 3
                if time.monotonic() > quiet_until:
                    break
    finally:
        consumer.close()
    return seen


HASHER = KeyedHasher(DEV_HASH_KEY, "k0")  # the workers', as the tests start them


async def test_an_unreadable_consent_withholds_and_a_new_recipient_ends_the_old_consent(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """A consent with a 65-character psid is dead-lettered and withholds the account's
    next transaction; a readable consent for another psid then ends the first consent
    (REPLACED receipt, CONSENT_ENDED to the first psid) and only then notifies the new
    psid; the bank's counts reconcile."""
    settings, bank, worker = await pipeline_worker(settings, "paths", tmp_path / "data", workers)
    cat = Catalog(settings)

    now = int(time.time() * 1000)
    key = f"{bank}:ACC-A".encode()
    first, second = f"psid-{uuid.uuid4().hex[:10]}", f"psid-{uuid.uuid4().hex[:10]}"
    consent: dict[str, Any] = {
        **samples.CONSENT,
        "bank_id": bank,
        "account_id": "ACC-A",
        "psid": first,
        "consent_id": f"c1-{bank}",
        "valid_until": now + 86_400_000,
        "updated_at": now,
        "permissions": ["TRANSACTIONS"],
        "quiet_hours": None,
    }
    stream = cat.account_stream().name

    async def in_stream(kind: bytes, count: int) -> bool:
        records = await kafka.read_all(settings, stream)
        found = sum(1 for r in records if r.key == key and ("kind", kind) in _headers(r))
        return found >= count

    async def decisions(count: int) -> list[dict[str, Any]]:
        audit = [codec.decode_any(r.value) for r in await kafka.read_all(settings, AUDIT)]
        return [d for s, d in audit if s == model.DECISION and d["bank_id"] == bank][:count]

    async def decided(count: int) -> bool:
        return len(await decisions(count)) >= count

    def transaction(n: int) -> bytes:
        record = {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": "ACC-A",
            "transaction_id": f"{bank}-{n}",
            "pending_transaction_id": None,
            "booked_at": now,
        }
        return codec.encode(model.TRANSACTION, record)

    def consent_record(**changes: Any) -> bytes:
        return codec.encode(model.CONSENT, {**consent, **changes})

    bank_topic = cat.bank(bank).name
    librdkafka_send(settings, CONSENTS, key, consent_record())
    await until(lambda: in_stream(b"consent", 1), worker)
    librdkafka_send(settings, bank_topic, b"ACC-A", transaction(1))
    await until(lambda: decided(1), worker)

    librdkafka_send(settings, CONSENTS, key, consent_record(psid="9" * 65, updated_at=now + 1))
    await until(lambda: in_stream(b"consent-unreadable", 1), worker)
    librdkafka_send(settings, bank_topic, b"ACC-A", transaction(2))
    await until(lambda: decided(2), worker)

    replacement = consent_record(psid=second, consent_id=f"c2-{bank}", updated_at=now + 2)
    librdkafka_send(settings, CONSENTS, key, replacement)
    await until(lambda: in_stream(b"consent", 2), worker)
    librdkafka_send(settings, bank_topic, b"ACC-A", transaction(3))
    await until(lambda: decided(3), worker)
    counts = await reconcile.wait_balanced(settings, codec, [bank], 30)
    assert worker.stop() == 0

    verdicts = [(d["transaction_id"], d["outcome"], d["reason"]) for d in await decisions(3)]
    assert verdicts == [
        (f"{bank}-1", "FORWARDED", None),
        (f"{bank}-2", "WITHHELD", "NO_CONSENT"),
        (f"{bank}-3", "FORWARDED", None),
    ]
    notes = [
        codec.decode(model.NOTIFICATION, m.value())
        for m in librdkafka_read(settings, NOTIFICATIONS, {first.encode(), second.encode()}, 3)
    ]
    # Keyed by psid, the two recipients' notifications sit on their own partitions: the
    # order holds per recipient, and in time across them.
    to_first = [n for n in notes if n["psid"] == first]
    to_second = [n for n in notes if n["psid"] == second]
    assert [n["kind"] for n in to_first] == ["TRANSACTION", "CONSENT_ENDED"]
    assert [n["kind"] for n in to_second] == ["TRANSACTION"]
    assert to_second[0]["created_at"] >= to_first[1]["created_at"]
    receipts = [
        d
        for s, d in (codec.decode_any(r.value) for r in await kafka.read_all(settings, AUDIT))
        if s == model.ERASURE_RECEIPT and d["bank_id"] == bank
    ]
    assert [(r["consent_id"], r["reason"]) for r in receipts] == [(f"c1-{bank}", "REPLACED")]
    hashed = HASHER.account(*key.decode().split(":", 1)).encode()
    letters = [r for r in await kafka.read_all(settings, DLQ) if r.key == hashed]  # sealed
    assert [dict(_headers(r))["reason"] for r in letters] == [b"FIELD_TOO_LONG"]
    assert counts[bank].balanced and counts[bank].ingested == 3


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_a_transaction_that_raises_in_the_accounts_handler_is_dead_lettered(
    settings: Settings,
    codec: Codec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    guarantee: str,
) -> None:
    """A transaction on which the accounts handler raises (a rule planted to fail) is
    dead-lettered as PROCESSING_ERROR with its bank topic's coordinates; the partition
    goes on (the transactions after it are notified) and the bank reconciles: 5 in =
    4 forwarded + 1 dead letter."""
    bank = unique_bank()
    app = await fresh_app(settings, "raises", [bank])
    app = dataclasses.replace(app, data_dir=tmp_path, processing_guarantee=guarantee)  # type: ignore[arg-type]  # a Guarantee literal
    real = account_rules.apply

    def apply(state: Any, tx: Any, consent: Any, now: int) -> Any:
        if tx["transaction_id"].endswith("-boom"):
            raise ZeroDivisionError("a rule that fails on one record")
        return real(state, tx, consent, now)

    monkeypatch.setattr(account_rules, "apply", apply)
    built = worker.pipeline(app, Metrics(CollectorRegistry()), tick_interval_s=0)
    tasks = [asyncio.create_task(built.ingest.run()), asyncio.create_task(built.accounts.run())]
    now = int(time.time() * 1000)
    psid = f"psid-{uuid.uuid4().hex[:10]}"
    cat = Catalog(app)
    consent = {
        **samples.CONSENT,
        "bank_id": bank,
        "account_id": "ACC-A",
        "psid": psid,
        "valid_until": now + 86_400_000,
        "updated_at": now,
        "permissions": ["TRANSACTIONS"],
    }
    key = f"{bank}:ACC-A".encode()
    ids = ["1", "2", "boom", "4", "5"]
    try:
        librdkafka_send(app, CONSENTS, key, codec.encode(model.CONSENT, consent))
        await bounded(_until_in(app, cat.account_stream().name, key), 60)
        for n in ids:
            tx = {
                **samples.TRANSACTION,
                "bank_id": bank,
                "account_id": "ACC-A",
                "transaction_id": f"{bank}-{n}",
                "pending_transaction_id": None,
                "booked_at": now,
            }
            librdkafka_send(app, cat.bank(bank).name, b"ACC-A", codec.encode(model.TRANSACTION, tx))
        counts = await reconcile.wait_balanced(app, codec, [bank], 60)
    finally:
        built.ingest.stop()
        built.accounts.stop()
        await bounded(asyncio.gather(*tasks), 60)
    assert counts[bank].balanced and counts[bank].ingested == 5, counts[bank].line(bank)
    assert counts[bank].forwarded == 4 and dict(counts[bank].dlq) == {"PROCESSING_ERROR": 1}
    notes = [
        codec.decode(model.NOTIFICATION, r.value)
        for r in await kafka.read_all(app, NOTIFICATIONS)
        if r.key == psid.encode()
    ]
    expected = {notify.notification_id("TRANSACTION", bank, f"{bank}-{n}") for n in ids}
    expected.discard(notify.notification_id("TRANSACTION", bank, f"{bank}-boom"))
    assert {n["notification_id"] for n in notes} == expected
    hashed = HASHER.account(*key.decode().split(":", 1)).encode()
    [letter] = [r for r in await kafka.read_all(app, DLQ) if r.key == hashed]
    headers = dict(letter.headers)
    assert headers["reason"] == b"PROCESSING_ERROR"
    assert headers["error"] == b"ZeroDivisionError in the accounts stage"
    assert headers["source-topic"] == cat.bank(bank).name.encode()


async def _until_in(settings: Settings, topic: str, key: bytes) -> None:
    while not any(r.key == key for r in await kafka.read_all(settings, topic)):
        await asyncio.sleep(0.5)


def _headers(record: Any) -> list[tuple[str, bytes]]:
    return list(record.headers)


async def test_consent_v1_and_v2_producers_work_against_the_same_worker(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """A consent authority still on Consent v1 (schema id 2, no display) and one on v2
    (id 16) writing DISCREET, through librdkafka, to one worker: the v1 account's
    notification carries its amount and merchant (FULL by default), the v2 DISCREET
    account's carries the masked account only, in data and text."""
    settings, bank, worker = await pipeline_worker(settings, "display", tmp_path / "data", workers)
    now = int(time.time() * 1000)
    psids = {"V1": f"psid-{uuid.uuid4().hex[:10]}", "V2": f"psid-{uuid.uuid4().hex[:10]}"}
    stream = Catalog(settings).account_stream().name

    def consent(account: str) -> dict[str, Any]:
        return {
            **samples.CONSENT,
            "bank_id": bank,
            "account_id": account,
            "psid": psids[account],
            "consent_id": f"{account}-{bank}",
            "valid_until": now + 86_400_000,
            "updated_at": now,
            "permissions": ["TRANSACTIONS"],
            "quiet_hours": None,
        }

    v1 = codec.encode(model.CONSENT, consent("V1"), schema_id=2)
    v2 = codec.encode(model.CONSENT, {**consent("V2"), "display": "DISCREET"}, schema_id=16)
    assert v1[1:5] == (2).to_bytes(4, "big") and v2[1:5] == (16).to_bytes(4, "big")
    librdkafka_send(settings, CONSENTS, f"{bank}:V1".encode(), v1)
    librdkafka_send(settings, CONSENTS, f"{bank}:V2".encode(), v2)

    async def consents_in() -> bool:
        keys = {r.key for r in await kafka.read_all(settings, stream)}
        return {f"{bank}:V1".encode(), f"{bank}:V2".encode()} <= keys

    await until(consents_in, worker)
    for account in psids:
        tx = {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": account,
            "transaction_id": f"{bank}-{account}",
            "pending_transaction_id": None,
            "booked_at": now,
        }
        librdkafka_send(
            settings,
            Catalog(settings).bank(bank).name,
            account.encode(),
            codec.encode(model.TRANSACTION, tx),
        )
    keys = {p.encode() for p in psids.values()}
    seen = librdkafka_read(settings, NOTIFICATIONS, keys, 2)
    assert worker.stop() == 0
    notes = {n["psid"]: n for n in (codec.decode(model.NOTIFICATION, m.value()) for m in seen)}
    full, discreet = notes[psids["V1"]], notes[psids["V2"]]
    merchant = samples.TRANSACTION["merchant_name"]
    assert full["data"]["amount_minor"] is not None and merchant in full["text"]
    shown = {k for k, v in discreet["data"].items() if v is not None}
    assert shown == {"account_masked"}, shown
    assert merchant not in discreet["text"]
