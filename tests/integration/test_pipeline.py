"""The pipeline end to end: consent-gated notifications, audit and erasure on a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams import catalog, kafka, model
from streams.catalog import AUDIT, CONSENTS, NOTIFICATIONS, Catalog
from streams.codec import Codec
from streams.devkit import pipelinecheck
from streams.settings import Settings
from streams.tools import topics
from tests import samples
from tests.conftest import unique_bank
from tests.integration.harness import Worker, cli, metrics_text, pipeline_worker, send, until


async def test_notifications_follow_consent_and_stop_at_revocation(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """A consenting account gets TRANSACTION, LARGE_TRANSACTION and LOW_BALANCE; an account
    without consent gets nothing; after a revocation: a receipt, one CONSENT_ENDED, then silence;
    every transaction has one Decision with the right reason."""
    settings, bank, worker = await pipeline_worker(settings, "pipe", tmp_path / "data", workers)
    cat = Catalog(settings)

    now = int(time.time() * 1000)
    psid = f"psid-{uuid.uuid4().hex[:10]}"
    consent: dict[str, Any] = {
        **samples.CONSENT,
        "bank_id": bank,
        "account_id": "ACC-A",
        "psid": psid,
        "consent_id": f"c-{bank}",
        "valid_until": now + 86_400_000,
        "updated_at": now,
        "permissions": ["TRANSACTIONS", "BALANCES", "ALERTS"],
        "quiet_hours": None,
        "large_amount_minor": 50_000,
        "low_balance_minor": 10_000,
    }
    await send(settings, CONSENTS, f"{bank}:ACC-A".encode(), codec.encode(model.CONSENT, consent))

    def tx(n: int, account: str, amount: int, balance: int) -> bytes:
        record = {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": account,
            "transaction_id": f"{bank}-{n}",
            "pending_transaction_id": None,
            "amount_minor": amount,
            "booked_at": now,
            "balance_after_minor": balance,
        }
        return codec.encode(model.TRANSACTION, record)

    async def ours(topic: str) -> list[Any]:
        records = await kafka.read_all(settings, topic)
        if topic == NOTIFICATIONS:
            return [
                codec.decode(model.NOTIFICATION, r.value) for r in records if r.key == psid.encode()
            ]
        decoded = [codec.decode_any(r.value) for r in records]
        return [(s, d) for s, d in decoded if d["bank_id"] == bank]

    async def decisions(n: int) -> bool:
        return len([1 for s, _ in await ours(AUDIT) if s == model.DECISION]) >= n

    bank_topic = cat.bank(bank).name
    # Let the consent reach the account stream before the transactions: one order per account.
    await asyncio.sleep(0)
    await until(lambda: _has_key(settings, cat.account_stream().name, f"{bank}:ACC-A"), worker)
    await send(settings, bank_topic, b"ACC-A", tx(1, "ACC-A", -1_000, 60_000))
    await send(settings, bank_topic, b"ACC-A", tx(2, "ACC-A", -55_000, 5_000))  # large, low
    await send(settings, bank_topic, b"ACC-B", tx(3, "ACC-B", -1_000, 60_000))  # no consent
    await until(lambda: decisions(3), worker)

    revoked = {**consent, "status": "REVOKED_BY_PSU", "updated_at": now + 1}
    await send(settings, CONSENTS, f"{bank}:ACC-A".encode(), codec.encode(model.CONSENT, revoked))
    await until(lambda: _has_subject(ours, model.ERASURE_RECEIPT), worker)
    await send(settings, bank_topic, b"ACC-A", tx(4, "ACC-A", -2_000, 3_000))
    await until(lambda: decisions(4), worker)
    scraped = metrics_text(worker)
    assert worker.stop() == 0
    for line in [
        f'passerelle_events_in_total{{bank="{bank}"}} 4.0',
        f'passerelle_decisions_total{{bank="{bank}",outcome="FORWARDED",reason=""}} 2.0',
        f'passerelle_decisions_total{{bank="{bank}",outcome="WITHHELD",reason="NO_CONSENT"}} 1.0',
        f'passerelle_erasures_total{{bank="{bank}",reason="REVOKED_BY_PSU"}} 1.0',
    ]:
        assert line in scraped, line
    assert 'passerelle_e2e_latency_seconds_count{source="event_time"}' in scraped
    assert "process_resident_memory_bytes" in scraped and "python_gc_collections_total" in scraped
    labels = {  # no PII in a metric's name or labels; its value is a number and may hold
        v  # any digits (a latency sum of 4.155000446e+06 s once held "55000")
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        for v in (sample.name, *sample.labels.values())
    }
    assert not [v for v in labels if psid in v or "ACC-A" in v or "55000" in v]

    notes = await ours(NOTIFICATIONS)
    assert [n["kind"] for n in notes] == [
        "TRANSACTION",
        "TRANSACTION",
        "LARGE_TRANSACTION",
        "LOW_BALANCE",
        "CONSENT_ENDED",
    ]
    assert len({n["notification_id"] for n in notes}) == 5
    assert all("ACC-A" not in n["text"] for n in notes)
    audit = await ours(AUDIT)
    verdicts = {
        d["transaction_id"]: (d["outcome"], d["reason"]) for s, d in audit if s == model.DECISION
    }
    assert verdicts == {
        f"{bank}-1": ("FORWARDED", None),
        f"{bank}-2": ("FORWARDED", None),
        f"{bank}-3": ("WITHHELD", "NO_CONSENT"),
        f"{bank}-4": ("WITHHELD", "REVOKED"),
    }
    [receipt] = [d for s, d in audit if s == model.ERASURE_RECEIPT]
    assert receipt["reason"] == "REVOKED_BY_PSU" and receipt["erased"][0]["table"] == "accounts"
    assert {r["topic"] for r in receipt["remains"]} >= {CONSENTS, NOTIFICATIONS}
    state_key = b"accounts\x00" + f"{bank}:ACC-A".encode()
    changelog = [
        r
        for r in await kafka.read_all(settings, cat.changelog("accounts").name)
        if r.key == state_key
    ]
    assert changelog and changelog[-1].value is None, "the erasure must tombstone the changelog"

    # An access request (Art. 15), answered from the audit trail alone: each notification
    # sent about the account, with the fields it carried, and nothing about another one.
    asked = cli(settings, "privacy", "disclosures", "--bank", bank, "--account", "ACC-A")
    assert asked.returncode == 0, asked.stderr
    answer = asked.stdout.splitlines()
    assert [line.split()[1:3] for line in answer[:-1]] == [
        [n["kind"], n["notification_id"]] for n in notes
    ]
    carried = [f for f, v in notes[0]["data"].items() if v is not None]
    assert answer[0].endswith(": " + ", ".join(carried)) and "amount_minor" in carried
    assert answer[-1].startswith("5 notification(s) sent about") and "3 decision(s)" in answer[-1]
    assert "ACC-A" not in asked.stdout and psid not in asked.stdout
    other = cli(settings, "privacy", "disclosures", "--bank", bank, "--account", "ACC-B")
    assert other.stdout.startswith("0 notification(s)") and "1 decision(s)" in other.stdout


async def _has_key(settings: Settings, topic: str, key: str) -> bool:
    return any(r.key == key.encode() for r in await kafka.read_all(settings, topic))


async def _has_subject(ours: Callable[[str], Awaitable[list[Any]]], subject: str) -> bool:
    return any(s == subject for s, _ in await ours(AUDIT))


async def test_a_simulated_run_of_ten_thousand_events_reconciles(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Every record of every bank is forwarded, withheld or dead-lettered, once:
    in = forwarded + withheld + dlq for each bank, duplicates, malformed and spoofed included;
    and the independent checker's model agrees with every decision and TRANSACTION sent."""
    from streams.tools import reconcile, simulate

    app_id = f"sim-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=app_id)
    banks = [
        simulate.Bank(unique_bank(), "fr-FR", "Europe/Paris", "EUR", "p1"),
        simulate.Bank(unique_bank(), "en-GB", "Europe/London", "GBP", "p2"),
    ]
    await topics.create(
        settings, Catalog(settings).all([b.bank_id for b in banks]), say=lambda _: None
    )
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()
    stream = Catalog(settings).account_stream().name

    async def consents_in(keys: set[bytes]) -> None:
        await simulate.until_in_stream(settings, stream, keys)

    feed = await simulate.run(
        settings,
        codec,
        10_000,
        rate=0,
        banks=banks,
        seed=11,
        say=lambda _: None,
        after_consents=consents_in,
    )
    assert sum(feed.sent.values()) >= 10_000
    ids = [b.bank_id for b in banks]
    counts = await reconcile.wait_balanced(settings, codec, ids, 180)
    fed = await reconcile.wait_balanced(settings, codec, ids, 120, feed=True)
    assert worker.stop() == 0
    for bank in ids:  # each bank's own feed tells it exactly what the audit and DLQ say
        assert fed[bank] == counts[bank], fed[bank].line(bank) + "\n" + counts[bank].line(bank)
        told = await kafka.read_all(settings, catalog.outcomes_topic_name(bank))
        assert len(told) == feed.sent[bank]  # exactly_once: one outcome per record, no copy
    for bank, c in counts.items():
        assert c.balanced, c.line(bank)
        assert c.ingested == feed.sent[bank]
        assert c.forwarded > 0 and c.withheld["NO_CONSENT"] > 0 and c.withheld["DUPLICATE"] > 0
        assert sum(c.dlq.values()) > 0
    report = await pipelinecheck.check_pipeline(settings, codec, app_id, [b.bank_id for b in banks])
    print(report.table())
    assert report.exact, report.table()
    assert report.notifications_seen > 0 and report.notifications_expected > 0


def next_midnight(ms: int, zone: str) -> int:
    import datetime as dt
    from zoneinfo import ZoneInfo

    local = dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(zone))
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), ZoneInfo(zone))
    return int(midnight.timestamp() * 1000)


async def test_digests_and_expiry_follow_the_test_clock(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Time driven by ticks alone: each account's digest comes once after its own local
    midnight (Paris, New York), across a kill -9 and restart; a consent past valid_until ends
    with no consent event: a receipt (EXPIRED) and one CONSENT_ENDED."""
    from streams.core.ticks import send_ticks
    from streams.tools import simulate
    from tests.integration.harness import caught_up

    app_id = f"clock-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=app_id)
    bank = unique_bank()
    cat = Catalog(settings)
    stream = cat.account_stream().name
    await topics.create(settings, cat.all([bank]), say=lambda _: None)
    worker = Worker(
        settings, app_id, tmp_path / "data", "exactly_once", ["pipeline", "--tick-interval", "0"]
    )
    workers.append(worker)
    worker.start()

    now = int(time.time() * 1000)
    booked = now - 3_600_000
    people = {  # account: (psid, zone, digest, valid_until)
        "P": (f"p-{uuid.uuid4().hex[:8]}", "Europe/Paris", True, now + 30 * 86_400_000),
        "N": (f"n-{uuid.uuid4().hex[:8]}", "America/New_York", True, now + 30 * 86_400_000),
        "E": (f"e-{uuid.uuid4().hex[:8]}", "Europe/Paris", False, now + 2 * 3_600_000),
    }
    for account, (psid, zone, digest, expires) in people.items():
        record = {
            **samples.CONSENT,
            "bank_id": bank,
            "account_id": account,
            "psid": psid,
            "consent_id": f"c-{account}-{bank}",
            "timezone": zone,
            "daily_digest": digest,
            "permissions": ["TRANSACTIONS", "SUMMARIES"],
            "valid_until": expires,
            "updated_at": now,
            "quiet_hours": None,
        }
        await send(
            settings, CONSENTS, f"{bank}:{account}".encode(), codec.encode(model.CONSENT, record)
        )
    await simulate.until_in_stream(settings, stream, {f"{bank}:{a}".encode() for a in people})
    for n, account in enumerate(people):
        tx = {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": account,
            "booked_at": booked,
            "transaction_id": f"{bank}-{n}",
            "pending_transaction_id": None,
        }
        await send(
            settings, cat.bank(bank).name, account.encode(), codec.encode(model.TRANSACTION, tx)
        )

    async def settled() -> bool:
        """Ingest has passed our transactions on, and accounts has committed all it read.

        (A count of the account stream proves nothing: ingest also forwards every
        other test's consents from the shared consents topic.)"""
        return await caught_up(settings, f"{app_id}-ingest", cat.bank(bank).name) and (
            await caught_up(settings, f"{app_id}-accounts", stream)
        )

    async def tick(at_ms: int) -> None:
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await send_ticks(producer, stream, range(settings.partitions), at_ms)
        finally:
            await producer.stop()

    await until(settled, worker)
    midnights = [next_midnight(booked, zone) for _, zone, _, _ in people.values()]
    await tick(min(midnights) + 60_000)
    await until(settled, worker)
    worker.kill()  # a restart around midnight
    worker.start()
    later = max(*midnights, now + 2 * 3_600_000) + 60_000
    await tick(later)
    await tick(later + 1_000)
    await until(settled, worker)
    assert worker.stop() == 0

    psids = {psid: account for account, (psid, *_rest) in people.items()}
    notes = [
        codec.decode(model.NOTIFICATION, r.value)
        for r in await kafka.read_all(settings, NOTIFICATIONS)
        if r.key.decode() in psids
    ]
    kinds = sorted((psids[n["psid"]], n["kind"]) for n in notes)
    assert kinds == sorted(
        [
            ("P", "TRANSACTION"),
            ("N", "TRANSACTION"),
            ("E", "TRANSACTION"),
            ("P", "DAILY_DIGEST"),
            ("N", "DAILY_DIGEST"),
            ("E", "CONSENT_ENDED"),
        ]
    )
    receipts = [
        d
        for s, d in (codec.decode_any(r.value) for r in await kafka.read_all(settings, AUDIT))
        if s == model.ERASURE_RECEIPT and d["bank_id"] == bank
    ]
    assert [r["reason"] for r in receipts] == ["EXPIRED"]


async def test_gate_and_accounts_rules_hold_through_a_worker(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Through a real worker: a late older VALID does not revive a revoked consent;
    out-of-range is withheld; without BALANCES no balance leaves; PENDING then BOOKED
    notifies once; a reversal notifies; a stale backfill is withheld and notifies nothing."""
    from streams.tools import simulate
    from tests.integration.harness import caught_up

    app_id = f"rules-{uuid.uuid4().hex[:8]}"
    settings = Settings(bootstrap_servers=settings.bootstrap_servers, app_id=app_id)
    bank = unique_bank()
    cat = Catalog(settings)
    stream = cat.account_stream().name
    await topics.create(settings, cat.all([bank]), say=lambda _: None)
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()
    now = int(time.time() * 1000)

    def consent(account: str, **changes: Any) -> bytes:
        record = {
            **samples.CONSENT,
            "bank_id": bank,
            "account_id": account,
            "psid": f"{account}-{bank}",
            "consent_id": f"c-{account}-{bank}",
            "valid_until": now + 86_400_000,
            "updated_at": now,
            "quiet_hours": None,
            "permissions": ["TRANSACTIONS", "BALANCES"],
            "large_amount_minor": None,
            "low_balance_minor": None,
            **changes,
        }
        return codec.encode(model.CONSENT, record)

    def tx(account: str, n: str, **changes: Any) -> bytes:
        record = {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": account,
            "transaction_id": f"{bank}-{n}",
            "pending_transaction_id": None,
            "booked_at": now - 60_000,
            "balance_after_minor": 42_000,
            **changes,
        }
        return codec.encode(model.TRANSACTION, record)

    keyed = [  # (account, consent versions in order)
        (
            "REV",
            [
                consent("REV", updated_at=now + 10),
                consent("REV", status="REVOKED_BY_PSU", updated_at=now + 20),
                consent("REV", updated_at=now + 15),
            ],
        ),  # older VALID, arriving late
        ("RANGE", [consent("RANGE", transaction_to=now - 86_400_000)]),
        ("NOBAL", [consent("NOBAL", permissions=["TRANSACTIONS"])]),
        ("FLOW", [consent("FLOW")]),
    ]
    for account, versions in keyed:
        for value in versions:
            await send(settings, CONSENTS, f"{bank}:{account}".encode(), value)
    await simulate.until_in_stream(settings, stream, {f"{bank}:{a}".encode() for a, _ in keyed})
    await until(lambda: caught_up(settings, f"{app_id}-accounts", stream), worker)
    bank_topic = cat.bank(bank).name
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("REV", "rev-1", {}),
        ("RANGE", "range-1", {}),
        ("NOBAL", "nobal-1", {}),
        ("FLOW", "pend", {"status": "PENDING"}),
        ("FLOW", "book", {"pending_transaction_id": f"{bank}-pend"}),
        (
            "FLOW",
            "refund",
            {
                "status": "REVERSED",
                "reversed_transaction_id": f"{bank}-book",
                "amount_minor": 123_456,
            },
        ),
        ("FLOW", "old", {"booked_at": now - 3 * 86_400_000}),
    ]
    for account, n, changes in cases:
        await send(settings, bank_topic, account.encode(), tx(account, n, **changes))
    await until(lambda: _decided(settings, codec, bank, 7), worker)
    assert worker.stop() == 0

    decisions = {
        d["transaction_id"].removeprefix(f"{bank}-"): (d["outcome"], d["reason"])
        for s, d in (codec.decode_any(r.value) for r in await kafka.read_all(settings, AUDIT))
        if s == model.DECISION and d["bank_id"] == bank
    }
    assert decisions == {
        "rev-1": ("WITHHELD", "REVOKED"),
        "range-1": ("WITHHELD", "OUT_OF_RANGE"),
        "nobal-1": ("FORWARDED", None),
        "pend": ("FORWARDED", None),
        "book": ("FORWARDED", None),
        "refund": ("FORWARDED", None),
        "old": ("WITHHELD", "STALE"),
    }
    notes = [
        codec.decode(model.NOTIFICATION, r.value)
        for r in await kafka.read_all(settings, NOTIFICATIONS)
        if r.key.decode().endswith(f"-{bank}")
    ]
    by_account = sorted(
        (n["psid"].split("-")[0], n["kind"], n["data"]["amount_minor"]) for n in notes
    )
    assert by_account == sorted(
        [
            ("REV", "CONSENT_ENDED", None),
            ("NOBAL", "TRANSACTION", -123_456),
            ("FLOW", "TRANSACTION", -123_456),  # the PENDING; its BOOKED adds nothing
            ("FLOW", "TRANSACTION", 123_456),  # the reversal
        ]
    )
    [nobal] = [n for n in notes if n["psid"].startswith("NOBAL")]
    assert nobal["data"]["balance_minor"] is None and "solde" not in nobal["text"]
    [flow] = [n for n in notes if n["psid"].startswith("FLOW") and n["data"]["amount_minor"] < 0]
    assert flow["data"]["balance_minor"] == 42_000


async def _decided(settings: Settings, codec: Codec, bank: str, n: int) -> bool:
    found = 0
    for record in await kafka.read_all(settings, AUDIT):
        subject, decision = codec.decode_any(record.value)
        found += subject == model.DECISION and decision["bank_id"] == bank
    return found >= n
