"""The quickstarts of the bank and messaging guides run as written, against a real broker
and the served registry (they use confluent-kafka only, no code of ours)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from streams import kafka, model
from streams.catalog import NOTIFICATIONS, Catalog
from streams.codec import Codec
from streams.settings import Settings
from tests import samples
from tests.conftest import fresh_app, unique_bank
from tests.integration.harness import committed

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart"


def quickstart(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(QUICKSTART / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_bank_quickstart_writes_a_transaction_passerelle_reads(
    settings: Settings, codec: Codec, served: str
) -> None:
    """docs/quickstart/bank.py delivers one transaction that our codec reads back as the
    bank's, for the account it named."""
    bank = unique_bank()
    app = await fresh_app(settings, "quick", [bank])
    done = quickstart(
        "bank.py", "--bootstrap", app.bootstrap_servers, "--registry", served,
        "--bank", bank, "--account", "FR76-QUICK",
    )  # fmt: skip
    assert done.returncode == 0 and "delivered" in done.stdout, done.stderr
    [record] = await kafka.read_all(app, Catalog(app).bank(bank).name)
    tx = codec.decode(model.TRANSACTION, record.value)
    assert (record.key, tx["bank_id"], tx["account_id"]) == (b"FR76-QUICK", bank, "FR76-QUICK")


async def test_the_messaging_quickstart_reads_each_notification_once(
    settings: Settings, codec: Codec, served: str
) -> None:
    """docs/quickstart/messaging.py reads committed notifications, prints each id once
    (a repeat is deduplicated) and commits its group's offsets."""
    await fresh_app(settings, "quick", [])  # the shared topics, if no test made them yet
    group = f"messenger-quick-{uuid.uuid4().hex[:8]}"
    await _start_group_at_the_end(settings, group)  # not the whole shared topic
    note: dict[str, Any] = {**samples.NOTIFICATION, "notification_id": f"ntf-{uuid.uuid4().hex}"}
    frame = codec.encode(model.NOTIFICATION, note)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for _ in range(2):  # an at_least_once repeat
            await producer.send_and_wait(NOTIFICATIONS, frame, note["psid"].encode())
    finally:
        await producer.stop()
    started = time.monotonic()
    done = quickstart(
        "messaging.py", "--bootstrap", settings.bootstrap_servers, "--registry", served,
        "--group", group, "--idle", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(note["notification_id"]) == 1
    assert time.monotonic() - started < 110
    assert await committed(settings, group, NOTIFICATIONS) > 0


async def _start_group_at_the_end(settings: Settings, group: str) -> None:
    """Commit the group's offsets at the topic's end, as a team would before going live."""
    consumer = kafka.consumer(settings, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await kafka.partitions_of(consumer, NOTIFICATIONS)
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit(ends)
    finally:
        await consumer.stop()
