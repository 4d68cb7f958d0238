"""`passerelle deliver` on a real broker, against the local Send API (`streams.devkit.sendapi`).

Each test writes notifications to a topic of its own, runs the delivery worker
(in process, or as a subprocess where it is killed), and reads what the API
received and what the worker reported on `messenger.feedback.v1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streams import kafka, model
from streams.catalog import CONSENTS, DLQ, FEEDBACK, NOTIFICATIONS, Catalog
from streams.codec import Codec
from streams.devkit.sendapi import SendApi
from streams.metrics import DeliveryMetrics
from streams.settings import DeliverySettings, Settings
from streams.tools import reconcile, topics
from streams.tools.deliver import Deliverer
from tests import samples
from tests.conftest import NewTopicFactory
from tests.integration.harness import Worker, free_port, pipeline_worker, produce, send, until

TIMEOUT_S = 60.0


def note(psid: str, page: str, ident: str, **changes: Any) -> model.Notification:
    now = int(time.time() * 1000)
    n: dict[str, Any] = copy.deepcopy(dict(samples.NOTIFICATION))
    n.update(notification_id=ident, psid=psid, page_id=page, created_at=now)
    n.update({"expires_at": now + 86_400_000, **changes})
    return n  # type: ignore[return-value]  # a Notification, with the test's changes


def tokens(folder: Path, pages: dict[str, str]) -> Path:
    folder.mkdir(mode=0o700)
    for page, token in pages.items():
        (folder / page).write_text(token)
        (folder / page).chmod(0o600)
    return folder


def delivery(tmp: Path, port: int, **changes: Any) -> DeliverySettings:
    return DeliverySettings(
        graph_url=f"http://127.0.0.1:{port}",
        page_tokens_dir=tmp / "tokens",
        state_dir=tmp / "state",
        concurrency=16,
        timeout_ms=changes.pop("timeout_ms", 2000),
        **changes,
    )


async def write(settings: Settings, codec: Codec, topic: str, notes: list[Any]) -> None:
    cat = Catalog(settings)
    await topics.create(settings, [cat.feedback(), cat.dlq()], say=lambda _: None)
    await produce(
        settings, [(topic, n["psid"].encode(), codec.encode(model.NOTIFICATION, n)) for n in notes]
    )


@contextlib.asynccontextmanager
async def delivering(
    settings: Settings,
    config: DeliverySettings,
    codec: Codec,
    topic: str,
    start: str = "earliest",
    group: str | None = None,
) -> AsyncIterator[Deliverer]:
    """A delivery worker in this process (in a new group unless given one), stopped (and
    committed) at the end."""
    metrics = DeliveryMetrics(CollectorRegistry())
    group = group or f"messenger-t-{uuid.uuid4().hex[:8]}"
    worker = Deliverer(settings, config, codec, metrics, topic, group, start)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), TIMEOUT_S)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)


async def reports(settings: Settings, codec: Codec, ids: set[str]) -> dict[str, list[str]]:
    """Each of these notifications' outcomes on the feedback topic, in the order written."""
    found: dict[str, list[str]] = {}
    for record in await kafka.read_all(settings, FEEDBACK):
        report = codec.decode(model.DELIVERY_REPORT, record.value)
        if report["notification_id"] in ids:
            found.setdefault(report["notification_id"], []).append(report["outcome"])
    return found


async def reported(settings: Settings, codec: Codec, ids: set[str]) -> dict[str, list[str]]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = await reports(settings, codec, ids)
        if set(found) == ids or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


def value(worker: Deliverer, name: str, **labels: str) -> float:
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_each_answer_of_the_send_api_ends_as_its_outcome(
    settings: Settings, codec: Codec, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """Delivered, blocked, invalid, unavailable, outside the window, expired, a Page whose
    token is refused, a 5xx that passes on retry, a poison message and a timeout (both
    dead-lettered after the tries allowed): each is reported once with its outcome, only
    the delivered reach the API's log, every request body is valid for the schema."""
    api = SendApi(
        {"page-a": "tok-a", "page-flaky": "tok-f", "page-stopped": "the-real-one"},
        blocked={"p-blocked"},
        invalid={"p-invalid"},
        unavailable={"p-unavailable"},
        outside_window={"p-window"},
        poison={"p-poison"},
        errors={"page-flaky": 2},
        hang={"page-hang"},
    )
    runner, port = await api.serve()
    tokens(
        tmp_path / "tokens",
        {"page-a": "tok-a", "page-flaky": "tok-f", "page-stopped": "old", "page-hang": "h"},
    )
    past = int(time.time() * 1000) - 1
    run = uuid.uuid4().hex[:6]
    expected = [
        (note("p-ok", "page-a", f"{run}-ok"), "DELIVERED"),
        (note("p-blocked", "page-a", f"{run}-blocked"), "BLOCKED"),
        (note("p-invalid", "page-a", f"{run}-invalid"), "INVALID_RECIPIENT"),
        (note("p-unavailable", "page-a", f"{run}-unavailable"), "UNAVAILABLE"),
        (note("p-window", "page-a", f"{run}-window"), "OUTSIDE_WINDOW"),
        (note("p-late", "page-a", f"{run}-expired", expires_at=past), "EXPIRED"),
        (note("p-stopped", "page-stopped", f"{run}-stopped"), "PAGE_STOPPED"),
        (note("p-flaky", "page-flaky", f"{run}-flaky"), "DELIVERED"),
        (note("p-poison", "page-a", f"{run}-poison"), "FAILED"),
        (note("p-hang", "page-hang", f"{run}-hang"), "FAILED"),
    ]
    notes = [n for n, _ in expected]
    outcomes = {n["notification_id"]: o for n, o in expected}
    topic = await new_topic("deliver", partitions=2)
    await write(settings, codec, topic, notes)
    try:
        async with delivering(
            settings, delivery(tmp_path, port, timeout_ms=300), codec, topic
        ) as w:
            found = await reported(settings, codec, set(outcomes))
            flaky_retries = value(
                w, "passerelle_delivery_retries_total", page="page-flaky", reason="server_error"
            )
            timeouts = value(
                w, "passerelle_delivery_retries_total", page="page-hang", reason="timeout"
            )
            stopped = value(w, "passerelle_delivery_page_stopped", page="page-stopped")
    finally:
        await runner.cleanup()
    assert found == {ident: [outcome] for ident, outcome in outcomes.items()}
    assert sorted(s["body"]["recipient"]["id"] for s in api.sent) == ["p-flaky", "p-ok"]
    assert api.invalid_bodies == []
    assert (flaky_retries, timeouts, stopped) == (2, 4, 1)
    letters = [
        r for r in await kafka.read_all(settings, DLQ) if r.topic == DLQ and _names(r, outcomes)
    ]
    assert sorted(dict(r.headers)["reason"].decode() for r in letters) == [
        "PAGE_STOPPED",
        "SEND_FAILED",
        "SEND_FAILED",
    ]
    assert all(r.value is None for r in letters)  # the message stays on its topic


def _names(record: Any, ids: dict[str, str]) -> bool:
    return dict(record.headers).get("notification-id", b"").decode() in ids


async def test_nothing_of_an_ended_consent_is_delivered_after_its_consent_ended(
    settings: Settings, codec: Codec, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """Notifications queued before a CONSENT_ENDED, and older ones written after it, are
    dropped (reported CONSENT_ENDED); the CONSENT_ENDED and another consent's are sent;
    the barrier holds across a restart of the worker."""
    api = SendApi({"page-a": "tok-a"})
    runner, port = await api.serve()
    tokens(tmp_path / "tokens", {"page-a": "tok-a"})
    run, psid = uuid.uuid4().hex[:6], f"p-{uuid.uuid4().hex[:6]}"
    older = int(time.time() * 1000) - 60_000
    ended = note(psid, "page-a", f"{run}-ended", kind="CONSENT_ENDED", consent_id="c-old")
    first = [
        note(psid, "page-a", f"{run}-1", consent_id="c-old"),
        note(psid, "page-a", f"{run}-2", consent_id="c-old"),
        ended,
        note(psid, "page-a", f"{run}-3", consent_id="c-old", created_at=older),
        note(psid, "page-a", f"{run}-new", consent_id="c-new"),
    ]
    late = note(psid, "page-a", f"{run}-late", consent_id="c-old", created_at=older)
    topic = await new_topic("barrier")
    await write(settings, codec, topic, first)
    config, group = delivery(tmp_path, port), f"messenger-barrier-{run}"
    try:
        async with delivering(settings, config, codec, topic, group=group):
            await reported(settings, codec, {n["notification_id"] for n in first})
        await write(settings, codec, topic, [late])
        async with delivering(settings, config, codec, topic, group=group):
            found = await reported(settings, codec, {n["notification_id"] for n in [*first, late]})
    finally:
        await runner.cleanup()
    assert found == {
        f"{run}-1": ["CONSENT_ENDED"],
        f"{run}-2": ["CONSENT_ENDED"],
        f"{run}-ended": ["DELIVERED"],
        f"{run}-3": ["CONSENT_ENDED"],
        f"{run}-new": ["DELIVERED"],
        f"{run}-late": ["CONSENT_ENDED"],
    }
    assert [s["body"]["message"]["text"] for s in api.sent] == [ended["text"], first[-1]["text"]]


async def test_a_rate_limited_page_does_not_hold_back_another(
    settings: Settings, codec: Codec, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """Two Pages share one partition; the API lets one make 10 calls a second. The other
    Page's 60 messages are all delivered while the slow Page has sent about a second's
    worth, and only the slow Page was told to slow down."""
    api = SendApi({"page-slow": "s", "page-fast": "f"}, page_rate={"page-slow": 10})
    runner, port = await api.serve()
    tokens(tmp_path / "tokens", {"page-slow": "s", "page-fast": "f"})
    run = uuid.uuid4().hex[:6]
    notes = []
    for i in range(60):
        notes.append(note(f"slow-{i}", "page-slow", f"{run}-s{i}"))
        notes.append(note(f"fast-{i}", "page-fast", f"{run}-f{i}"))
    topic = await new_topic("pages")
    await write(settings, codec, topic, notes)
    try:
        async with delivering(settings, delivery(tmp_path, port), codec, topic) as w:
            found = await reported(settings, codec, {n["notification_id"] for n in notes})
            throttled = {
                page: value(w, "passerelle_delivery_retries_total", page=page, reason="throttled")
                for page in ("page-slow", "page-fast")
            }
    finally:
        await runner.cleanup()
    assert Counter(o for outcomes in found.values() for o in outcomes) == {"DELIVERED": 120}
    at = {
        page: sorted(s["at"] for s in api.sent if s["page"] == page)
        for page in ("page-slow", "page-fast")
    }
    fast_done = at["page-fast"][-1]
    slow_by_then = sum(1 for t in at["page-slow"] if t <= fast_done)
    print(
        f"fast page: 60 in {fast_done - at['page-fast'][0]:.2f} s; slow page: 60 in "
        f"{at['page-slow'][-1] - at['page-slow'][0]:.2f} s, {slow_by_then} of them by then; "
        f"throttled answers {throttled}"
    )
    assert slow_by_then <= 30
    assert throttled["page-fast"] == 0 and throttled["page-slow"] > 0


async def test_a_killed_worker_repeats_at_most_the_calls_it_had_in_flight(
    settings: Settings, codec: Codec, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """kill -9 of `passerelle deliver` mid-stream, then a restart: every notification is
    delivered, and those delivered twice are no more than the calls the restarted worker
    counted in flight (`passerelle_delivery_uncertain_total`), at most its concurrency."""
    api = SendApi({"page-k": "k"}, latency_ms={"page-k": 100})
    runner, port = await api.serve()
    tokens(tmp_path / "tokens", {"page-k": "k"})
    run = uuid.uuid4().hex[:6]
    notes = [note(f"k-{i % 150}", "page-k", f"{run}-{i}", text=f"n°{i}") for i in range(300)]
    topic = await new_topic("kill", partitions=2)
    await write(settings, codec, topic, notes)
    group = f"messenger-kill-{run}"
    web = free_port()
    env = {
        **os.environ,
        "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers,
        "PASSERELLE_GRAPH_URL": f"http://127.0.0.1:{port}",
        "PASSERELLE_PAGE_TOKENS_DIR": str(tmp_path / "tokens"),
        "PASSERELLE_DELIVER_DIR": str(tmp_path / "state"),
        "PASSERELLE_DELIVER_PORT": str(web),
        "PASSERELLE_DELIVER_CONCURRENCY": "16",
    }
    command = [sys.executable, "-m", "streams", "deliver", "--topic", topic, "--group", group]
    log = (tmp_path / "deliver.log").open("wb")
    first = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(api.sent) < 100:
            assert first.poll() is None and time.monotonic() < deadline, "the worker stopped"
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = len(api.sent)
        second = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            found = await reported(settings, codec, {n["notification_id"] for n in notes})
            metrics = await _scrape(web)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        await runner.cleanup()
    received = Counter(s["body"]["message"]["text"] for s in api.sent)
    assert set(received) == {n["text"] for n in notes}  # every one reached the API
    assert set(found) == {n["notification_id"] for n in notes}  # and was reported
    uncertain = metrics.get("passerelle_delivery_uncertain_total", -1.0)
    repeats = sum(count - 1 for count in received.values())
    print(
        f"killed after {before} calls; {len(api.sent)} calls in all; "
        f"in flight at the kill {uncertain:.0f}; delivered twice {repeats}"
    )
    assert 0 <= repeats <= uncertain <= 16


async def _scrape(port: int) -> dict[str, float]:
    def get() -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    text = await asyncio.to_thread(get)
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, number = line.partition(" ")
            values[name] = float(number)
    return values


async def test_an_unreachable_recipient_is_muted_for_that_consent(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """The API says the customer blocked the Page; the worker reports BLOCKED; the pipeline
    mutes that consent: the account's next transaction is withheld as UNREACHABLE."""
    settings, bank, worker = await pipeline_worker(settings, "unreach", tmp_path / "data", workers)
    psid, page = f"psid-{uuid.uuid4().hex[:10]}", f"page-{uuid.uuid4().hex[:6]}"
    api = SendApi({page: "t"}, blocked={psid})
    runner, port = await api.serve()
    tokens(tmp_path / "tokens", {page: "t"})
    now = int(time.time() * 1000)
    consent = {
        **samples.CONSENT,
        "consent_id": f"c-{psid}",
        "bank_id": bank,
        "account_id": "ACC-0303",
        "psid": psid,
        "page_id": page,
        "valid_until": now + 86_400_000,
        "updated_at": now,
        "quiet_hours": None,
    }
    key = f"{bank}:ACC-0303".encode()
    await send(settings, CONSENTS, key, codec.encode(model.CONSENT, consent))
    cat = Catalog(settings)

    async def pay(n: int) -> str:
        tx = {
            **samples.TRANSACTION,
            "bank_id": bank,
            "account_id": "ACC-0303",
            "transaction_id": f"{bank}-{n}",
            "pending_transaction_id": None,
            "booked_at": int(time.time() * 1000),
        }
        value = codec.encode(model.TRANSACTION, tx)
        await send(settings, cat.bank(bank).name, b"ACC-0303", value)
        return str(tx["transaction_id"])

    async def decision(tx_id: str) -> dict[str, Any] | None:
        from streams.catalog import AUDIT

        for record in await kafka.read_all(settings, AUDIT):
            subject, d = codec.decode_any(record.value)
            if subject == model.DECISION and d["transaction_id"] == tx_id:
                return dict(d)
        return None

    try:
        async with delivering(
            settings, delivery(tmp_path, port), codec, NOTIFICATIONS, "latest"
        ) as w:
            first = await pay(1)
            await until(lambda: _decided(decision, first), worker)
            await until(lambda: _metric(w, page, "BLOCKED"), worker)
            # The report travels (feedback → psid stream → account): pay until withheld.
            reasons = []
            for n in range(2, 30):
                paid = await pay(n)
                await until(lambda paid=paid: _decided(decision, paid), worker)  # type: ignore[misc]
                reasons.append((await decision(paid) or {}).get("reason"))
                if reasons[-1] == "UNREACHABLE":
                    break
            after = await pay(99)
            await until(lambda: _decided(decision, after), worker)
    finally:
        await runner.cleanup()
    assert (await decision(first) or {}).get("outcome") == "FORWARDED"
    print(f"decisions after the report: {reasons}")
    assert reasons[-1] == "UNREACHABLE" and set(reasons[:-1]) <= {None}
    assert (await decision(after) or {}).get("reason") == "UNREACHABLE"  # and it stays
    assert api.sent == []
    counted = (await reconcile.deliveries(settings, codec, [bank]))[bank]
    assert counted["BLOCKED"] >= 1 and counted["DELIVERED"] == 0  # the bank can count it


async def _decided(decision: Any, tx_id: str) -> bool:
    return await decision(tx_id) is not None


async def _metric(worker: Deliverer, page: str, outcome: str) -> bool:
    return value(worker, "passerelle_deliveries_total", page=page, outcome=outcome) > 0


async def test_a_rebalance_hands_partitions_over_without_a_second_send(
    settings: Settings, codec: Codec, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """A second worker joins the group mid-stream (each with its own journal): the first
    finishes and commits what it read before its partitions move, and starts nothing
    read meanwhile, so every notification reaches the API exactly once. Notifications
    keep coming until the second worker has delivered some (however long the rebalance
    takes on a loaded machine)."""
    api = SendApi({"page-r": "r"}, latency_ms={"page-r": 50})
    runner, port = await api.serve()
    tokens(tmp_path / "tokens", {"page-r": "r"})
    run = uuid.uuid4().hex[:6]
    topic = await new_topic("rebalance", partitions=4)
    group = f"messenger-rebalance-{run}"
    notes: list[model.Notification] = []

    async def more(count: int = 100) -> None:
        made = [
            note(f"r-{i % 200}", "page-r", f"{run}-{i}", text=f"n°{i}")
            for i in range(len(notes), len(notes) + count)
        ]
        notes.extend(made)
        await write(settings, codec, topic, made)

    def worker(name: str) -> Deliverer:
        config = delivery(tmp_path, port)
        config = DeliverySettings(**{**config.__dict__, "state_dir": tmp_path / name})
        metrics = DeliveryMetrics(CollectorRegistry())
        return Deliverer(settings, config, codec, metrics, topic, group, "earliest")

    def delivered(w: Deliverer) -> float:
        return value(w, "passerelle_deliveries_total", page="page-r", outcome="DELIVERED")

    first, second = worker("first"), worker("second")
    stop = asyncio.Event()
    await more()
    tasks = [asyncio.create_task(first.run(stop))]
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(api.sent) < 50:
            assert time.monotonic() < deadline and not tasks[0].done()
            await asyncio.sleep(0.02)
        tasks.append(asyncio.create_task(second.run(stop)))
        while delivered(second) == 0 and time.monotonic() < deadline:
            await more()
            await asyncio.sleep(0.5)
        await more()
        found = await reported(settings, codec, {n["notification_id"] for n in notes})
        both = [delivered(w) for w in (first, second)]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT_S)
        await runner.cleanup()
    received = Counter(s["body"]["message"]["text"] for s in api.sent)
    print(f"{len(notes)} notifications: the first worker {both[0]:.0f}, the second {both[1]:.0f}")
    assert set(found) == {n["notification_id"] for n in notes}
    assert received == Counter({n["text"]: 1 for n in notes})
    assert both[1] > 0  # the second worker did take partitions over
