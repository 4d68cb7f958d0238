"""`passerelle produce`: a bank's integration engineer sends JSON lines as framed Avro.

Each line is one Transaction as JSON. Timestamps may be epoch milliseconds or
ISO 8601 strings with a zone. Every line is checked before anything is sent: the
schema, the bank (it must be the topic's), the currency, whole minor units. A
bad line is reported with its number and the field at fault, and is not sent;
the others are.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams import kafka, model
from streams.catalog import bank_topic_name
from streams.codec import Codec
from streams.errors import CodecError
from streams.rules.money import is_currency
from streams.settings import Settings

Say = Callable[[str], None]
TIMESTAMPS = ("booked_at",)
# Avro would truncate 12.5 to 12 without a word: refused instead.
INTEGERS = ("amount_minor", "balance_after_minor")


@dataclass
class Report:
    sent: int = 0
    errors: list[str] = field(default_factory=list)


def parse_line(codec: Codec, bank_id: str, number: int, line: str) -> tuple[bytes, bytes] | str:
    """(key, frame) for a good line; otherwise the error, starting with the line number."""
    try:
        record: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"line {number}: not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(record, dict):
        return f"line {number}: not a JSON object"
    for name in TIMESTAMPS:
        if isinstance(record.get(name), str):
            try:
                when = dt.datetime.fromisoformat(record[name])
            except ValueError:
                return f"line {number}: field {name}: not an ISO 8601 timestamp"
            if when.tzinfo is None:  # read in this machine's zone, it would move the booking
                return f"line {number}: field {name}: needs a zone offset (Z or +01:00)"
            record[name] = int(when.timestamp() * 1000)
    for name in INTEGERS:
        value = record.get(name)
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            return f"line {number}: field {name}: must be a whole number of minor units"
    if record.get("bank_id") != bank_id:
        return f"line {number}: field bank_id: must be {bank_id}, the bank of this topic"
    if not is_currency(str(record.get("currency"))):
        return f"line {number}: field currency: not an ISO 4217 code"
    try:
        frame = codec.encode(model.TRANSACTION, record)
    except CodecError as exc:
        return f"line {number}: {exc}"
    return str(record["account_id"]).encode(), frame


async def produce(
    settings: Settings, codec: Codec, bank_id: str, lines: Iterable[str], say: Say = print
) -> Report:
    report = Report()
    good: list[tuple[bytes, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = parse_line(codec, bank_id, number, line)
        if isinstance(parsed, str):
            report.errors.append(parsed)
            say(parsed)
        else:
            good.append(parsed)
    if good:
        topic = bank_topic_name(bank_id)
        hint = f"run `passerelle topics create --bank {bank_id}` (as an operator)"
        await kafka.require_topics(settings, [topic], hint)
        producer = kafka.producer(settings)
        try:
            await producer.start()
            for key, frame in good:
                await producer.send_and_wait(topic, frame, key)
                report.sent += 1
        finally:
            await producer.stop()
    say(f"sent {report.sent} records to {bank_topic_name(bank_id)}; {len(report.errors)} refused")
    return report
