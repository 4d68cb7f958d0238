"""Dead letters: a record the pipeline will not process, kept with why and where it came from.

A dead letter keeps the source record's key and bytes, and says in its headers
`reason` (a code), `error` (a message that quotes no payload), and the source
coordinates `source-topic`, `source-partition`, `source-offset`. A record of
the per-account stream already carries its bank topic's coordinates in those
headers, and they are kept: reconciliation counts the dead letter for the
bank that sent it (`in = forwarded + withheld + dlq`). A customer's message is
dead-lettered without its bytes (`kept=False`): what a customer writes is not
kept; the `size` header says how long it was.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from streams import catalog
from streams.core.spec import Emit
from streams.stream import Source, dead_letter_headers


def dead_letter(
    record: ConsumerRecord[bytes, bytes],
    reason: str,
    detail: str,
    carried: bool = False,
    kept: bool = True,
) -> Emit:
    """The original bytes (unless not `kept`), keyed as they came, with why and where in
    the headers. With `carried` (a record of our own per-account stream), where is the
    bank record's coordinates it carries; never trust a bank's own headers to say where
    it came from: they could name another bank's topic."""
    source = (Source.carried(record) if carried else None) or Source.of(record)
    if not kept:
        headers = dead_letter_headers(reason, detail, source, len(record.value or b""))
        return Emit(catalog.DLQ, record.key, None, headers=headers)
    return Emit(
        catalog.DLQ, record.key, record.value, headers=dead_letter_headers(reason, detail, source)
    )
