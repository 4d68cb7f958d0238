"""Erase an account, then search every topic for it: it remains only where its receipt
and the record of processing say it may, and nowhere in the worker's live state."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams import model, privacy
from streams.agents.stored import ACCOUNTS_TABLE, ASKED_TABLE, CONSENTS_TABLE
from streams.catalog import AUDIT, CONSENTS, DLQ, NOTIFICATIONS, Catalog
from streams.codec import Codec, EmbeddedRegistry
from streams.core.store import PartitionStore
from streams.kafka import read_all
from streams.redact import KeyedHasher
from streams.settings import DEV_HASH_KEY, Settings
from tests import samples
from tests.integration.harness import Worker, cli, pipeline_worker, send, until

HASHER = KeyedHasher(DEV_HASH_KEY, "k0")  # the worker's, as the harness starts it


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_an_erased_account_remains_only_where_its_receipt_says(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker], guarantee: str
) -> None:
    """A consenting account is notified, dead-lettered once, revoked and then erased by the
    consent authority's tombstone. Its account number, psid and a canary merchant name are
    then found only in topics its receipt lists, in the part (key or value) whose data
    categories the record of processing declares there; never in the DLQ, whose letter
    break-glass opened while the account lived and finds shredded after, nor in our own
    streams, purged once committed; the worker's store holds nothing under its key."""
    data = tmp_path / "data"
    env = {
        "PASSERELLE_GUARANTEE": guarantee,
        "PASSERELLE_PURGE_AFTER_S": "0",  # the stages purge what they committed at once
    }
    settings, bank, worker = await pipeline_worker(settings, "erase", data, workers, env)
    cat = Catalog(settings)
    now = int(time.time() * 1000)
    account = f"FR76{uuid.uuid4().int % 10**20:020d}"
    psid, canary = f"psid-{uuid.uuid4().hex[:12]}", f"CANARY-{uuid.uuid4().hex[:12]}"
    key = f"{bank}:{account}".encode()
    consent: dict[str, Any] = {
        **samples.CONSENT,
        **{"bank_id": bank, "account_id": account, "psid": psid, "consent_id": f"c-{bank}"},
        **{"valid_until": now + 86_400_000, "updated_at": now, "quiet_hours": None},
        "permissions": ["TRANSACTIONS", "BALANCES", "ALERTS"],
    }
    await send(settings, CONSENTS, key, codec.encode(model.CONSENT, consent))

    async def audited(subject: str, n: int = 1) -> bool:
        records = [codec.decode_any(r.value) for r in await read_all(settings, AUDIT)]
        return sum(1 for s, d in records if s == subject and d["bank_id"] == bank) >= n

    bank_topic = cat.bank(bank).name
    for n in range(3):
        tx = {
            **samples.TRANSACTION,
            **{"bank_id": bank, "account_id": account, "transaction_id": f"{bank}-{n}"},
            **{"pending_transaction_id": None, "booked_at": now, "merchant_name": canary},
        }
        frame = codec.encode(model.TRANSACTION, tx)
        await send(settings, bank_topic, account.encode(), frame)
    await send(settings, bank_topic, account.encode(), b"\x07 not a frame " + canary.encode())
    await until(lambda: audited(model.DECISION, 3), worker)
    hashed = HASHER.account(bank, account).encode()

    async def dead_lettered() -> bool:
        return any(r.key == hashed for r in await read_all(settings, DLQ))

    await until(dead_lettered, worker)
    opened = cli(settings, "dlq", "show", "--decrypt", "--bank", bank)
    assert opened.returncode == 0, opened.stderr
    assert canary in opened.stdout, "while the account lives, break-glass opens its letter"
    revoked = {**consent, "status": "REVOKED_BY_PSU", "updated_at": now + 1}
    await send(settings, CONSENTS, key, codec.encode(model.CONSENT, revoked))
    worker.kill()  # while it reads the revocation, or before: the erasure and the key's
    worker.start()  # deletion are one transaction, done again from the changelog's state
    await until(lambda: audited(model.ERASURE_RECEIPT), worker)
    erased = cli(settings, "consent", "erase", "--bank", bank, "--account", account)
    assert erased.returncode == 0, erased.stderr
    marker = CONSENTS_TABLE.encode() + b"\x00" + key
    changelog = cat.changelog("accounts").name

    async def marker_gone() -> bool:
        found = [r for r in await read_all(settings, changelog) if r.key == marker]
        return bool(found) and found[-1].value is None

    await until(marker_gone, worker)
    streams = (cat.account_stream().name, cat.psid_stream().name)

    async def purged() -> bool:  # each stage deletes what it committed, every 30 s
        held = [r for t in streams for r in await read_all(settings, t)]
        return not any(account.encode() in (r.key or b"") + (r.value or b"") for r in held)

    await until(purged, worker)
    assert worker.stop() == 0
    shredded = cli(settings, "dlq", "show", "--decrypt", "--bank", bank)
    assert shredded.returncode == 0, shredded.stderr
    assert canary not in shredded.stdout and "shredded" in shredded.stdout, shredded.stdout

    receipts = [
        d
        for s, d in (codec.decode_any(r.value) for r in await read_all(settings, AUDIT))
        if s == model.ERASURE_RECEIPT and d["bank_id"] == bank
    ]  # at_least_once may repeat the erasure's batch after the kill: the same receipt
    assert receipts and all(r == receipts[0] for r in receipts), receipts
    if guarantee == "exactly_once":
        assert len(receipts) == 1
    receipt = receipts[0]
    assert "keys" in {e["table"] for e in receipt["erased"]}
    remains = {r["topic"] for r in receipt["remains"]}
    record = {e.topic: e for e in privacy.record(cat, EmbeddedRegistry.load())}
    needles = {account: "account-number", psid: "messenger-id", canary: "financial"}
    hits: set[tuple[str, str, str]] = set()
    topics = {t.name: t for t in cat.all([bank])}
    for topic in topics.values():
        for r in await read_all(settings, topic.name):
            for needle, category in needles.items():
                for part, raw in (("key", r.key), ("value", r.value)):
                    if raw is not None and needle.encode() in raw:
                        hits.add((topic.name, part, category))
    for topic_name, part, category in sorted(hits):
        assert topic_name in remains, f"{topic_name} holds the account; its receipt says not"
        entry = record[privacy.template(cat, topics[topic_name])]
        declared = entry.key if part == "key" else entry.value
        assert category in declared, f"{topic_name}'s {part} holds {category}, undeclared"
    expected = {
        (bank_topic, "key", "account-number"),
        (bank_topic, "value", "financial"),
        (NOTIFICATIONS, "key", "messenger-id"),
        (NOTIFICATIONS, "value", "financial"),
    }
    print(
        f"{guarantee}: found after the erasure, (topic, part, category):", *sorted(hits), sep="\n  "
    )
    assert expected <= hits, f"the search found {sorted(hits)}"
    assert not [h for h in hits if h[0] == DLQ], "the DLQ holds the account in clear"
    assert not [h for h in hits if h[0] in streams], "our streams keep what they carried"
    assert not [h for h in hits if h[0] == AUDIT], "the audit trail names the account in clear"

    for path in sorted((data / settings.app_id / "accounts").iterdir()):
        store = PartitionStore(path)
        try:
            for table in (CONSENTS_TABLE, ACCOUNTS_TABLE, ASKED_TABLE):
                assert store.get(table, key) is None, f"{table} still holds the account"
        finally:
            store.close()
