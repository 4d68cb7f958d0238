"""The conversation end to end: customers ask and control on a real broker and worker."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

from streams import kafka, model
from streams.catalog import AUDIT, CONSENTS, INBOUND, REQUESTS, Catalog
from streams.codec import Codec
from streams.settings import Settings
from streams.tools import ask, topics
from tests import samples
from tests.conftest import unique_bank
from tests.integration.harness import Worker, metrics_text, pipeline_worker, send, until

PAGE = "page-talk"


async def test_customers_ask_pause_resume_and_stop_from_the_chat(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """A psid with accounts at two banks gets one answer per account, each carrying only
    what its consent grants; a psid no consent names gets one reply; PAUSE withholds
    (MUTED_BY_PSU) until RESUME; STOP writes one withdrawal request per consent; after a
    revocation the account's answer is a refusal; inbound counts reconcile per page."""
    settings, bank, worker = await pipeline_worker(settings, "talk", tmp_path / "data", workers)
    other = unique_bank()
    cat = Catalog(settings)
    await topics.create(settings, [cat.bank(other)], say=lambda _: None)
    now = int(time.time() * 1000)
    psid, stranger = f"psid-{uuid.uuid4().hex[:10]}", f"psid-{uuid.uuid4().hex[:10]}"

    def consent(bank_id: str, account: str, permissions: list[str]) -> dict[str, Any]:
        return {
            **samples.CONSENT,
            "consent_id": f"c-{bank_id}",
            "bank_id": bank_id,
            "account_id": account,
            "psid": psid,
            "page_id": PAGE,
            "permissions": permissions,
            "valid_until": now + 86_400_000,
            "updated_at": now,
            "quiet_hours": None,
            "large_amount_minor": None,
            "low_balance_minor": None,
        }

    first = consent(bank, "ACC-0101", ["TRANSACTIONS", "BALANCES", "SUMMARIES"])
    second = consent(other, "ACC-0202", ["TRANSACTIONS"])
    for c in (first, second):
        key = f"{c['bank_id']}:{c['account_id']}".encode()
        await send(settings, CONSENTS, key, codec.encode(model.CONSENT, c))

    n = 0

    async def pay(bank_id: str, account: str, balance: int) -> str:
        nonlocal n
        n += 1
        tx = {
            **samples.TRANSACTION,
            "bank_id": bank_id,
            "account_id": account,
            "transaction_id": f"{bank_id}-{n}",
            "pending_transaction_id": None,
            "amount_minor": -1_250,
            "booked_at": int(time.time() * 1000),
            "balance_after_minor": balance,
        }
        await send(
            settings, cat.bank(bank_id).name, account.encode(), codec.encode(model.TRANSACTION, tx)
        )
        return str(tx["transaction_id"])

    async def decisions() -> list[dict[str, Any]]:
        found = [codec.decode_any(r.value) for r in await kafka.read_all(settings, AUDIT)]
        return [d for s, d in found if s == model.DECISION and d["bank_id"] in (bank, other)]

    async def decided(count: int) -> bool:
        return len(await decisions()) >= count

    async def decision(tx_id: str) -> dict[str, Any]:
        return next(d for d in await decisions() if d["transaction_id"] == tx_id)

    async def say(who: str, text: str) -> list[model.Notification]:
        said = ask.message(who, PAGE, text, None)
        return await ask.ask(settings, codec, said, wait_s=60, say=lambda _: None)

    # The consents reach the accounts, which link the psid; then one purchase each.
    await until(lambda: _linked(settings, cat, psid, 2), worker)
    await pay(bank, "ACC-0101", 123_456)
    await pay(other, "ACC-0202", 50_000)
    await until(lambda: decided(2), worker)

    answers = {a["bank_id"]: a for a in await say(psid, "solde ?")}
    assert set(answers) == {bank, other}
    assert answers[bank]["data"]["balance_minor"] == 123_456
    assert "0101" in answers[bank]["text"] and "1\u202f234,56" in answers[bank]["text"]
    assert answers[other]["data"]["balance_minor"] is None  # TRANSACTIONS only: a refusal
    assert "ne partage pas son solde" in answers[other]["text"]
    assert all(a["envelope"]["messaging_type"] == "RESPONSE" for a in answers.values())

    (unlinked,) = await say(stranger, "solde ?")
    assert unlinked["bank_id"] == "" and unlinked["data"]["balance_minor"] is None

    assert len(await say(psid, "pause")) == 2
    paused = await pay(bank, "ACC-0101", 120_000)
    await until(lambda: decided(3), worker)
    assert (await decision(paused))["reason"] == "MUTED_BY_PSU"
    assert len(await say(psid, "reprendre")) == 2
    resumed = await pay(bank, "ACC-0101", 110_000)
    await until(lambda: decided(4), worker)
    assert (await decision(resumed))["outcome"] == "FORWARDED"

    assert len(await say(psid, "STOP")) == 2
    requests = [r for r in await kafka.read_all(settings, REQUESTS) if psid_of(r, bank, other)]
    withdrawals = sorted(
        codec.decode(model.WITHDRAWAL_REQUEST, r.value)["consent_id"] for r in requests
    )
    assert withdrawals == sorted([first["consent_id"], second["consent_id"]])

    revoked = {**first, "status": "REVOKED_BY_PSU", "updated_at": now + 1}
    await send(
        settings, CONSENTS, f"{bank}:ACC-0101".encode(), codec.encode(model.CONSENT, revoked)
    )
    await until(lambda: _linked(settings, cat, psid, 1, unlinked=True), worker)
    after = {a["bank_id"]: a for a in await say(psid, "solde")}
    assert set(after) == {other}  # the revoked account is no longer this psid's to ask about
    stopped = await pay(other, "ACC-0202", 40_000)
    await until(lambda: decided(5), worker)
    assert (await decision(stopped))["reason"] == "MUTED_BY_PSU"  # STOP held for it too

    # A question racing a revocation: it is answered with data only if its request was
    # read before the revocation on the account's stream.
    racing = ask.message(psid, PAGE, "dernières opérations", None)
    ended = {**second, "status": "REVOKED_BY_PSU", "updated_at": now + 1}
    key = f"{other}:ACC-0202".encode()
    delay = random.choice([0.0, 1.5])  # the question written before or after, by turns

    async def revoke() -> None:
        await asyncio.sleep(delay)
        await send(settings, CONSENTS, key, codec.encode(model.CONSENT, ended))

    _, (answer, *more) = await asyncio.gather(
        revoke(), ask.ask(settings, codec, racing, wait_s=60, say=lambda _: None)
    )
    assert more == []
    order = await _order_on_stream(settings, codec, cat, key, racing["mid"])
    if order == "request first":
        assert answer["bank_id"] == other and answer["data"]["amount_minor"] == -1_250
    elif order == "revocation first":
        assert answer["bank_id"] == other and answer["data"]["amount_minor"] is None
    else:  # unlinked before the question was read: no account to ask, nothing said
        assert answer["bank_id"] == "" and answer["data"]["amount_minor"] is None
    print(f"the race (revocation sent after {delay} s): {order}")

    spoofed = {**ask.message(stranger, PAGE, "solde", None)}  # keyed by another psid
    await send(settings, INBOUND, psid.encode(), codec.encode(model.INBOUND_MESSAGE, spoofed))
    await until(lambda: _dead_lettered(worker), worker)
    scraped = metrics_text(worker)
    assert psid not in scraped and "solde" not in scraped
    counts = _inbound(scraped, PAGE)
    assert counts["in"] == 8 and counts["dlq"] == 1
    assert counts["refused"] == (2 if order == "not routed" else 1)
    assert (
        counts["in"]
        == counts["answered"] + counts["refused"] + counts.get("rate_limited", 0) + counts["dlq"]
    )
    assert worker.stop() == 0


async def _order_on_stream(
    settings: Settings, codec: Codec, cat: Catalog, key: bytes, mid: str
) -> str:
    """Which came first on the account's stream: the request for `mid` or the revocation;
    "not routed" when the request never reached it (the unlink reached the psid's index
    first), whether or not the revocation did."""
    request, revocation = None, None
    records = await kafka.read_all(settings, cat.account_stream().name)
    for position, record in enumerate(r for r in records if r.key == key):
        kind = dict(record.headers).get("kind")
        if kind == b"request" and json.loads(record.value)["mid"] == mid:
            request = position
        consent = (
            codec.decode(model.CONSENT, record.value)
            if kind == b"consent" and record.value
            else None
        )
        if consent is not None and consent["status"] == "REVOKED_BY_PSU" and revocation is None:
            revocation = position
    if request is None:
        return "not routed"
    return "request first" if revocation is None or request < revocation else "revocation first"


async def _dead_lettered(worker: Worker) -> bool:
    return _inbound(metrics_text(worker), PAGE).get("dlq", 0) >= 1


def psid_of(record: Any, *banks: str) -> bool:
    return record.key.decode().split(":")[0] in banks


async def _linked(
    settings: Settings, cat: Catalog, psid: str, count: int, unlinked: bool = False
) -> bool:
    """Whether the accounts stage wrote `count` links (or an unlink) for the psid."""
    records = [
        r for r in await kafka.read_all(settings, cat.psid_stream().name) if r.key == psid.encode()
    ]
    kinds = [dict(r.headers).get("kind") for r in records]
    return b"unlink" in kinds if unlinked else kinds.count(b"link") >= count


def _inbound(scraped: str, page: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in scraped.splitlines():
        if line.startswith("passerelle_inbound_total{") and f'page="{page}"' in line:
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts
