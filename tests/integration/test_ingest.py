"""Ingest re-keys every bank's transactions and the consents into one per-account stream."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from streams import kafka, model
from streams.catalog import CONSENTS, DLQ, Catalog
from streams.codec import Codec
from streams.redact import KeyedHasher
from streams.settings import DEV_HASH_KEY, Settings
from streams.tools import topics
from tests import samples
from tests.conftest import unique_bank
from tests.integration.harness import Worker, produce, until


def transaction(bank: str, account: str, n: int, **changes: Any) -> dict[str, Any]:
    return {
        **samples.TRANSACTION,
        "bank_id": bank,
        "account_id": account,
        "transaction_id": f"{bank}-{account}-{n}",
        **changes,
    }


def consent(bank: str, account: str) -> dict[str, Any]:
    return {
        **samples.CONSENT,
        "bank_id": bank,
        "account_id": account,
        "consent_id": f"c-{bank}-{account}",
    }


async def test_ingest_rekeys_and_rejects(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Valid records reach the account stream once, keyed <bank>:<account> and co-partitioned
    with consents.v1; spoofed, mismatched and malformed ones reach the DLQ with their reason
    (sealed for the account their key names, keyed by its hash);
    a bank topic created after start is picked up without a restart."""
    app_id = f"ingest-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=app_id)
    alpine, bretagne, late = unique_bank(), unique_bank(), unique_bank()
    catalog = Catalog(settings)
    await topics.create(settings, catalog.all([alpine, bretagne]), say=lambda _: None)
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()

    a_topic, b_topic = catalog.bank(alpine).name, catalog.bank(bretagne).name
    accounts = [f"FR76{n:08d}" for n in range(6)]
    good = [(a_topic, acc, transaction(alpine, acc, n)) for n, acc in enumerate(accounts)]
    good += [(b_topic, acc, transaction(bretagne, acc, n)) for n, acc in enumerate(accounts[:3])]
    records: list[tuple[str, bytes | None, bytes | None]] = [
        (t, acc.encode(), codec.encode(model.TRANSACTION, tx)) for t, acc, tx in good
    ]
    records += [
        (CONSENTS, f"{alpine}:{acc}".encode(), codec.encode(model.CONSENT, consent(alpine, acc)))
        for acc in accounts[:2]
    ]
    records += [(CONSENTS, f"{alpine}:{accounts[2]}".encode(), None)]  # a tombstone
    bad = {
        "BANK_MISMATCH": (
            a_topic,
            b"X1",
            codec.encode(model.TRANSACTION, transaction(bretagne, "X1", 0)),
        ),
        "KEY_MISMATCH": (
            a_topic,
            b"someone-else",
            codec.encode(model.TRANSACTION, transaction(alpine, "X2", 0)),
        ),
        "BAD_MAGIC_BYTE": (a_topic, b"X3", b"\x07garbage"),
        "TRUNCATED_FRAME": (b_topic, b"X4", b"\x00\x00"),
        "WRONG_SUBJECT": (b_topic, b"X5", codec.encode(model.CONSENT, consent(bretagne, "X5"))),
        "BAD_KEY": (
            CONSENTS,
            f"{alpine}-no-colon".encode(),
            codec.encode(model.CONSENT, consent(alpine, "X6")),
        ),
    }
    await produce(settings, records + list(bad.values()))

    stream = catalog.account_stream().name
    ours = (alpine.encode(), bretagne.encode(), late.encode())

    async def stream_records() -> list[Any]:  # what ingest let in (not the dead, to seal)
        return [
            r
            for r in await kafka.read_all(settings, stream)
            if r.key.startswith(ours) and dict(r.headers).get("kind") != b"dead"
        ]

    expected = len(good) + 3
    await until(lambda: _count_at_least(stream_records, expected), worker)

    # A new bank joins while the worker runs.
    await topics.create(settings, [catalog.bank(late)], say=lambda _: None)
    await produce(
        settings,
        [
            (
                catalog.bank(late).name,
                b"L1",
                codec.encode(model.TRANSACTION, transaction(late, "L1", 0)),
            )
        ],
    )
    await until(lambda: _count_at_least(stream_records, expected + 1), worker)
    assert worker.stop() == 0

    seen = await stream_records()
    keys = [r.key.decode() for r in seen]
    assert sorted(keys) == sorted(
        [f"{alpine}:{acc}" for acc in accounts]
        + [f"{bretagne}:{acc}" for acc in accounts[:3]]
        + [f"{alpine}:{acc}" for acc in accounts[:3]]
        + [f"{late}:L1"]
    )
    consents_read = {r.key: r.partition for r in await kafka.read_all(settings, CONSENTS)}
    for record in seen:
        if dict(record.headers)["kind"] == b"consent":
            assert consents_read[record.key] == record.partition, "not co-partitioned"
    hasher = KeyedHasher(DEV_HASH_KEY, "k0")  # the worker's
    planted = {  # sealed, keyed by the account's hash; a key naming none stays as it was
        (topic.encode(), key if topic == CONSENTS else hasher.account(bank, key.decode()).encode())
        for topic, key, _ in bad.values()
        for bank in [alpine if topic == a_topic else bretagne]
    }
    dead = [
        dict(r.headers)
        for r in await kafka.read_all(settings, DLQ)
        if (dict(r.headers).get("source-topic"), r.key) in planted
    ]
    assert sorted(h["reason"].decode() for h in dead) == sorted(bad)
    assert all({"source-partition", "source-offset", "error"} <= h.keys() for h in dead)


async def _count_at_least(read: Any, n: int) -> bool:
    return len(await read()) >= n
