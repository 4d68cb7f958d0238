"""The consent promise end to end, with the client banks and messaging teams use.

A bank and a consent authority write with librdkafka (confluent-kafka), a messaging
team reads notifications with it (read_committed), and a real worker sits between:
an unreadable consent withholds its account until a readable one arrives, and a
consent for another recipient ends the previous one before anything reaches the new.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from streams import kafka, model
from streams.catalog import AUDIT, CONSENTS, DLQ, NOTIFICATIONS, Catalog
from streams.codec import Codec
from streams.settings import Settings
from streams.tools import reconcile, topics
from tests import samples
from tests.conftest import unique_bank
from tests.integration.harness import Worker, until


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


async def test_an_unreadable_consent_withholds_and_a_new_recipient_ends_the_old_consent(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """A consent with a 65-character psid is dead-lettered and withholds the account's
    next transaction; a readable consent for another psid then ends the first consent
    (REPLACED receipt, CONSENT_ENDED to the first psid) and only then notifies the new
    psid; the bank's counts reconcile."""
    app_id = f"paths-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=app_id)
    bank = unique_bank()
    cat = Catalog(settings)
    await topics.create(settings, cat.all([bank]), say=lambda _: None)
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()

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
    assert [(n["psid"], n["kind"]) for n in notes] == [
        (first, "TRANSACTION"),
        (first, "CONSENT_ENDED"),
        (second, "TRANSACTION"),
    ]
    receipts = [
        d
        for s, d in (codec.decode_any(r.value) for r in await kafka.read_all(settings, AUDIT))
        if s == model.ERASURE_RECEIPT and d["bank_id"] == bank
    ]
    assert [(r["consent_id"], r["reason"]) for r in receipts] == [(f"c1-{bank}", "REPLACED")]
    letters = [r for r in await kafka.read_all(settings, DLQ) if r.key == key]
    assert [dict(_headers(r))["reason"] for r in letters] == [b"FIELD_TOO_LONG"]
    assert counts[bank].balanced and counts[bank].ingested == 3


def _headers(record: Any) -> list[tuple[str, bytes]]:
    return list(record.headers)
