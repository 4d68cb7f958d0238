"""Standard serializers against our registry, as banks and messaging teams use them.

confluent-kafka's Schema Registry client, `AvroSerializer` and `AvroDeserializer`,
configured only with a registry URL (their defaults: TopicNameStrategy, auto-register),
talk to the worker's web port: a bank writes a consent and a transaction with them, a
messaging team reads the notification with them; and `passerelle schemas serve` answers
the same without a worker.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from streams import model
from streams.catalog import CONSENTS, NOTIFICATIONS, Catalog
from streams.codec import DEFAULT_SCHEMAS_DIR, Codec
from streams.settings import Settings
from tests import samples
from tests.conftest import unique_bank
from tests.integration.harness import Worker, pipeline_worker, until_ready
from tests.integration.test_consent_paths import librdkafka_read, librdkafka_send


def schema_text(name: str) -> str:
    return (DEFAULT_SCHEMAS_DIR / name).read_text()


def listening_on(port: int) -> list[str]:
    """The IPv4 addresses a TCP socket listens on at `port` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.append(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


def as_datetime(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def value(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


async def test_a_bank_and_a_messaging_team_use_confluent_serializers_unchanged(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Through the worker's web port (listening on loopback only, by default; its files
    readable by its user only),
    confluent-kafka's serializers with their defaults
    frame a consent and a transaction exactly as our codec does (the pinned ids), the
    pipeline notifies, and the deserializer reads the notification into its fields."""
    settings, bank, worker = await pipeline_worker(settings, "registry", tmp_path / "data", workers)
    cat = Catalog(settings)
    await until_ready(worker)
    port = int(worker.env["PASSERELLE_WEB_PORT"])
    assert listening_on(port) == ["127.0.0.1"]  # the default; a container sets 0.0.0.0
    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{worker.env['PASSERELLE_WEB_PORT']}"})

    now = int(time.time() * 1000)
    psid = f"psid-{uuid.uuid4().hex[:10]}"
    consent: dict[str, Any] = {
        **samples.CONSENT,
        "bank_id": bank,
        "account_id": "ACC-R",
        "psid": psid,
        "valid_until": now + 86_400_000,
        "updated_at": now,
        "permissions": ["TRANSACTIONS"],
        "quiet_hours": None,
    }
    transaction: dict[str, Any] = {
        **samples.TRANSACTION,
        "bank_id": bank,
        "account_id": "ACC-R",
        "transaction_id": f"{bank}-r1",
        "pending_transaction_id": None,
        "booked_at": now,
    }
    bank_topic = cat.bank(bank).name
    consent_bytes = AvroSerializer(client, schema_text("Consent.v1.avsc"))(consent, value(CONSENTS))
    tx_bytes = AvroSerializer(client, schema_text("Transaction.v2.avsc"))(
        transaction, value(bank_topic)
    )
    assert consent_bytes == codec.encode(model.CONSENT, consent, schema_id=2)  # a v1 producer
    newer = {**consent, "display": "DISCREET"}  # and one on Consent v2, the newest (id 16)
    v2_bytes = AvroSerializer(client, schema_text("Consent.v2.avsc"))(newer, value(CONSENTS))
    assert v2_bytes == codec.encode(model.CONSENT, newer) and v2_bytes[1:5] == bytes([0, 0, 0, 16])
    assert tx_bytes == codec.encode(model.TRANSACTION, transaction)

    librdkafka_send(settings, CONSENTS, f"{bank}:ACC-R".encode(), consent_bytes)
    time.sleep(2)  # the consent first, on its own partition
    librdkafka_send(settings, bank_topic, b"ACC-R", tx_bytes)
    [message] = librdkafka_read(settings, NOTIFICATIONS, {psid.encode()}, 1)
    note = AvroDeserializer(client)(message.value(), value(NOTIFICATIONS))
    assert (note["kind"], note["psid"], note["bank_id"]) == ("TRANSACTION", psid, bank)
    ours = codec.decode(model.NOTIFICATION, message.value())
    # timestamp-millis: a datetime for a standard deserializer, epoch ms for our codec
    assert note == {k: as_datetime(v) if k.endswith("_at") else v for k, v in ours.items()}
    assert worker.stop() == 0
    # Its stores hold the account's summary and consent: readable by the worker's user only.
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    shared = [p for p in data.rglob("*") if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert shared == [] and any(data.rglob("CURRENT")), "RocksDB stores, none shared"


def test_the_standalone_registry_answers_what_serializers_ask_and_registers_nothing_new(
    served: str, codec: Codec
) -> None:
    """Without a worker: the latest version of a bank topic's value subject is the
    Transaction schema's pinned id; an id resolves to its schema; a schema that is not
    the contract's is refused (read-only), never given an id."""
    client = SchemaRegistryClient({"url": served})
    latest = client.get_latest_version(f"bank.{unique_bank()}.transactions.v1-value")
    assert latest.schema_id == codec.registry.latest(model.TRANSACTION).id
    by_id = json.loads(client.get_schema(latest.schema_id).schema_str or "")
    assert by_id["name"] == "Transaction"
    serializer = AvroSerializer(client, '{"type": "record", "name": "X", "fields": []}')
    with pytest.raises(SchemaRegistryError) as refused:
        serializer({}, value(NOTIFICATIONS))
    assert refused.value.http_status_code == 422 and refused.value.error_code == 42205
