"""The people-facing commands on the real broker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from streams import kafka, worker
from streams.catalog import DLQ, NOTIFICATIONS, Catalog
from streams.codec import Codec
from streams.devkit import localkafka
from streams.metrics import Metrics
from streams.settings import LocalKafkaSettings, Settings
from streams.tools import reconcile, topics
from tests import samples
from tests.conftest import bounded, fresh_app, unique_bank
from tests.integration.harness import cli


async def test_produce_sends_good_lines_and_names_bad_ones(
    settings: Settings, tmp_path: Path
) -> None:
    """Two good lines are sent; the bad third is reported with its number; the exit code is 1."""
    bank = unique_bank()
    await topics.create(settings, [Catalog(settings).bank(bank)], say=lambda _: None)
    good = {**samples.TRANSACTION, "bank_id": bank}
    lines = [
        json.dumps(good),
        json.dumps({**good, "transaction_id": "t2"}),
        json.dumps({**good, "currency": "XXXX"}),
    ]
    path = tmp_path / "feed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "streams", "produce", "--bank", bank, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers},
    )
    assert result.returncode == 1
    assert "line 3: field currency" in result.stdout
    assert "sent 2 records" in result.stdout
    assert len(await kafka.read_all(settings, f"bank.{bank}.transactions.v1")) == 2


async def test_consent_grant_show_revoke(settings: Settings) -> None:
    """grant writes a VALID consent, show reads it back with the psid masked, revoke writes
    the next version REVOKED_BY_PSU; revoking twice is refused in one line; erase writes
    the tombstone, after which there is no consent to show."""
    bank, env = unique_bank(), {**os.environ, "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers}
    await fresh_app(settings, "consent", [bank])  # the consents topic, run alone too

    def consent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "streams",
                "consent",
                *args,
                "--bank",
                bank,
                "--account",
                "ACC-1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    granted = consent(
        "grant", "--psid", "24871234567890123", "--permissions", "transactions,alerts"
    )
    assert granted.returncode == 0, granted.stderr
    shown = consent("show")
    assert '"status": "VALID"' in shown.stdout and "24871234567890123" not in shown.stdout
    assert '"permissions": ["TRANSACTIONS", "ALERTS"]' in shown.stdout
    assert consent("revoke").returncode == 0
    assert '"status": "REVOKED_BY_PSU"' in consent("show").stdout
    again = consent("revoke")
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    erased = consent("erase")
    assert erased.returncode == 0 and "ACC-1" not in erased.stdout, erased.stderr
    assert consent("show").stdout.strip() == "no consent"  # the tombstone is the newest


def test_a_bank_without_a_topic_is_told_how_to_create_it(settings: Settings) -> None:
    """`produce` for a bank whose topic does not exist says so in one line, with the command
    that creates it, within seconds (not a producer waiting for metadata, then a traceback)."""
    bank = unique_bank()
    env = {**os.environ, "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers}
    line = json.dumps({**samples.TRANSACTION, "bank_id": bank, "booked_at": samples.BOOKED_AT})
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "streams", "produce", "--bank", bank],
        input=line + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1 and time.monotonic() - started < 30
    assert result.stderr.strip().splitlines() == [
        f"passerelle produce: no topic bank.{bank}.transactions.v1: run "
        f"`passerelle topics create --bank {bank}` (as an operator)"
    ]


async def test_the_runbooks_commands_work_as_written(settings: Settings, tmp_path: Path) -> None:
    """A bad record dead-lettered by real ingest and accounts stages is shown by `passerelle
    dlq` (its reason and coordinates, never its bytes; break-glass `--decrypt` opens it)
    and by Kafka's own console consumer through `passerelle kafka tool`; the stage's
    group is described, and no transaction hangs."""
    bank = unique_bank()
    app = await fresh_app(settings, "runbook", [bank])
    app = dataclasses.replace(app, data_dir=tmp_path)
    built = worker.pipeline(app, Metrics(CollectorRegistry()), tick_interval_s=0)
    stages = [built.ingest, built.accounts]  # ingest passes it on; accounts seals it
    running = [asyncio.create_task(stage.run()) for stage in stages]
    try:
        producer = kafka.producer(app)
        await producer.start()
        try:
            await producer.send_and_wait(
                Catalog(app).bank(bank).name, b"\x07secret-bytes", b"ACC-1"
            )
        finally:
            await producer.stop()
        await bounded(_until_dead_lettered(app, bank), 60)
    finally:
        for stage in stages:
            stage.stop()
        await asyncio.gather(*running)

    shown = cli(app, "dlq", "show", "--bank", bank)
    assert shown.returncode == 0, shown.stderr
    assert f"bank.{bank}.transactions.v1-" in shown.stdout and "BAD_MAGIC_BYTE" in shown.stdout
    assert "secret-bytes" not in shown.stdout and "1 dead letters" in shown.stdout
    opened = cli(app, "dlq", "show", "--decrypt", "--bank", bank)
    assert opened.returncode == 0 and "secret-bytes" in opened.stdout, opened.stderr
    wrong = cli(app, "dlq", "count", "--decrypt")
    assert wrong.returncode != 0 and len(wrong.stderr.strip().splitlines()) == 1
    counted = cli(app, "dlq", "count", "--bank", bank)
    assert counted.stdout.splitlines()[0].split() == [bank, "BAD_MAGIC_BYTE", "1"]

    consumed = cli(
        app, "kafka", "tool", "console-consumer", "--topic", "passerelle.dlq.v1",
        "--from-beginning", "--max-messages", "1", "--timeout-ms", "60000",
        "--isolation-level", "read_committed", "--property", "print.headers=true",
        "--property", "print.value=false",
    )  # fmt: skip
    assert consumed.returncode == 0 and "reason:" in consumed.stdout, consumed.stderr
    group = f"{app.app_id}-ingest"
    described = cli(app, "kafka", "tool", "consumer-groups", "--describe", "--group", group)
    assert described.returncode == 0 and f"bank.{bank}.transactions.v1" in described.stdout
    hanging = cli(app, "kafka", "tool", "transactions", "find-hanging", "--broker-id", "1")
    assert hanging.returncode == 0, hanging.stderr
    out = hanging.stdout
    assert "No hanging transactions" in out or len(out.strip().splitlines()) <= 1, out


async def _until_dead_lettered(settings: Settings, bank: str) -> None:
    topic = Catalog(settings).bank(bank).name.encode()
    while not any(
        ("source-topic", topic) in r.headers
        for r in await kafka.read_all(settings, "passerelle.dlq.v1")
    ):
        await asyncio.sleep(0.5)


async def test_reconcile_since_marks_counts_only_what_came_after(
    settings: Settings, codec: Codec
) -> None:
    """On a reused broker a run counts its own records: marks taken before it make
    `in` the records written after them (the demo reconciles this way)."""
    bank = unique_bank()
    app = await fresh_app(settings, "marks", [bank])
    topic = Catalog(app).bank(bank).name

    async def write(n: int) -> None:
        producer = kafka.producer(app)
        await producer.start()
        try:
            for i in range(n):
                await producer.send_and_wait(topic, b"\x00bytes", f"ACC-{i}".encode())
        finally:
            await producer.stop()

    await write(3)
    since = await reconcile.marks(app, [bank])
    await write(2)
    assert (await reconcile.reconcile(app, codec, [bank], since))[bank].ingested == 2
    assert (await reconcile.reconcile(app, codec, [bank]))[bank].ingested == 5


def test_a_broker_without_the_catalogs_topics_is_named_by_tail_and_dlq(
    spare: tuple[localkafka.Cluster, LocalKafkaSettings],
) -> None:
    """On a broker where `topics create` never ran, `tail` and `dlq show` each say which
    topic is missing and how to create it, in one line (a consumer subscribed to a topic
    that does not exist would wait for it, and never say so)."""
    cluster, local = spare
    localkafka.up(cluster, local, say=lambda _: None)
    for command, topic in ((["tail"], NOTIFICATIONS), (["dlq", "show"], DLQ)):
        result = cli(cluster.client_settings(), *command)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"passerelle {command[0]}: no topic {topic}: run `passerelle topics create`"
        ]
