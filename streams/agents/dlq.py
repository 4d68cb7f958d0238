"""Dead letters: a record the pipeline will not process, kept with why and where it came from.

A dead letter keeps the source record's key and bytes, and says in its headers
`reason` (a code), `error` (a message that quotes no payload), and the source
coordinates `source-topic`, `source-partition`, `source-offset`. A record of
the per-account stream already carries its bank topic's coordinates in those
headers, and they are kept: reconciliation counts the dead letter for the
bank that sent it (`in = forwarded + withheld + dlq`).
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from streams import catalog
from streams.core.stage import Emit

SOURCE_HEADERS = ("source-topic", "source-partition", "source-offset")


def source_headers(
    record: ConsumerRecord[bytes, bytes], carried: bool = False
) -> tuple[tuple[str, bytes], ...]:
    """Where a record was read: its own coordinates, or with `carried` (a record of our
    own per-account stream) the ones it carries. Never trust a bank's record to say
    where it came from: it could name another bank's topic."""
    if carried:
        found = {k: v for k, v in record.headers if k in SOURCE_HEADERS}
        if len(found) == len(SOURCE_HEADERS):
            return tuple((h, found[h]) for h in SOURCE_HEADERS)
    return (
        ("source-topic", record.topic.encode()),
        ("source-partition", str(record.partition).encode()),
        ("source-offset", str(record.offset).encode()),
    )


def dead_letter(
    record: ConsumerRecord[bytes, bytes], reason: str, detail: str, carried: bool = False
) -> Emit:
    """The original bytes, keyed as they came, with why and where in the headers."""
    source = source_headers(record, carried)
    headers = (("reason", reason.encode()), ("error", detail.encode()), *source)
    return Emit(catalog.DLQ, record.key, record.value, headers=headers)
