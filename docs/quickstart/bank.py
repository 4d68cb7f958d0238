"""A bank's first transaction with the standard client: confluent-kafka, its Avro
serializer, and Passerelle's schema registry (no code of Passerelle's).

    passerelle schemas serve &          # or a worker's web port
    python docs/quickstart/bank.py --bank demo --account FR7630006000011234567890189

On the secure cluster add `--username bank-demo --password-file <file>` (SCRAM-SHA-512).
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "Transaction.v2.avsc"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka's brokers")
    parser.add_argument("--registry", default="http://127.0.0.1:8081", help="the registry's URL")
    parser.add_argument("--bank", required=True, help="your bank id (your topic's)")
    parser.add_argument("--account", required=True, help="the account's id (the record key)")
    parser.add_argument("--amount-minor", type=int, default=-1250, help="signed, a debit < 0")
    parser.add_argument("--username", help="SCRAM-SHA-512 user (secure cluster)")
    parser.add_argument("--password-file", type=Path, help="the user's password, in a file")
    args = parser.parse_args()

    config = {"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all"}
    if args.username:
        config |= {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": args.username,
            "sasl.password": args.password_file.read_text().strip(),
        }
    topic = f"bank.{args.bank}.transactions.v1"
    serialize = AvroSerializer(SchemaRegistryClient({"url": args.registry}), SCHEMA.read_text())
    transaction = {
        "transaction_id": f"{args.bank}-{uuid.uuid4().hex[:12]}",  # your idempotency key
        "bank_id": args.bank,
        "account_id": args.account,
        "status": "BOOKED",
        "pending_transaction_id": None,
        "reversed_transaction_id": None,
        "amount_minor": args.amount_minor,
        "currency": "EUR",
        "booked_at": dt.datetime.now(dt.UTC),
        "merchant_name": "Boulangerie du Port",
        "mcc": "5462",
        "description": None,
        "balance_after_minor": None,
        "channel": "CARD",
        "value_date": None,
    }
    value = serialize(transaction, SerializationContext(topic, MessageField.VALUE))
    delivered: list[str] = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            raise SystemExit(f"not delivered: {error}")
        delivered.append(f"{message.topic()}-{message.partition()}@{message.offset()}")

    producer = Producer(config)
    producer.produce(topic, value, args.account.encode(), on_delivery=report)
    if producer.flush(30) != 0 or not delivered:
        raise SystemExit("not delivered within 30 s: is the topic there and the broker up?")
    print(f"delivered {transaction['transaction_id']} to {delivered[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
