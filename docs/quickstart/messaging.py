"""A messaging team's first reader with the standard client: confluent-kafka, read
committed, its Avro deserializer and Passerelle's schema registry; deduplicated by
`notification_id`, offsets committed after each notification is handled.

    python docs/quickstart/messaging.py --group messenger-quickstart

Deliver where it prints (the Messenger Send API); the envelope says how
(docs/messaging-consumers.md). It stops after --idle seconds without a record.
"""

from __future__ import annotations

import argparse
import time

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "messenger.notifications.v1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka's brokers")
    parser.add_argument("--registry", default="http://127.0.0.1:8081", help="the registry's URL")
    parser.add_argument("--group", default="messenger-quickstart", help="starts with messenger-")
    parser.add_argument("--idle", type=float, default=10.0, help="stop after this many quiet s")
    args = parser.parse_args()

    deserialize = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    context = SerializationContext(TOPIC, MessageField.VALUE)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "isolation.level": "read_committed",  # never a message of an aborted transaction
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    seen: set[str] = set()  # keep these for as long as a message can be delivered (expires_at)
    quiet_since, last = time.monotonic(), None
    try:
        while time.monotonic() - quiet_since < args.idle:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            quiet_since = time.monotonic()
            note = deserialize(message.value(), context)
            if note["notification_id"] not in seen:
                seen.add(note["notification_id"])
                envelope = note["envelope"]
                print(
                    f"{note['notification_id']} {note['kind']} via {envelope['messaging_type']}"
                    f"/{envelope['tag']}: {note['text']}"
                )
            consumer.commit(message)  # asynchronous: the next poll does not wait for it
            last = message
    finally:
        if last is not None:  # where it stopped, committed before leaving the group
            consumer.commit(last, asynchronous=False)
        consumer.close()
    print(f"{len(seen)} notifications")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
