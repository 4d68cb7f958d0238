"""What the dead-letter topic holds: each record's reason and where it came from.

A dead letter keeps the original key and bytes (docs/runbook.md); this tool
never prints them (they can name accounts and amounts), only the headers an
operator needs to act: the reason code, the message, the source topic,
partition and offset, and the size of what was kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams import catalog, kafka
from streams.settings import Settings
from streams.stream import Source

Say = Callable[[str], None]


@dataclass(frozen=True)
class Letter:
    reason: str
    error: str
    source: str
    """`topic-partition@offset`, or `?` when the headers do not say."""
    bank: str
    """The bank whose topic it came from; `consents` for consents.v1, `inbound` for
    messenger.inbound.v1, `feedback` for messenger.feedback.v1, `delivery` for a
    notification the delivery worker gave up on; `?` if unknown."""
    size: int


def letter(record: Any) -> Letter:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    source = Source.carried(record)
    where = f"{source.topic}-{source.partition}@{source.offset}" if source else "?"
    topic = source.topic if source else ""
    shared = {
        catalog.CONSENTS: "consents",
        catalog.INBOUND: "inbound",
        catalog.FEEDBACK: "feedback",
        catalog.NOTIFICATIONS: "delivery",
    }
    bank = catalog.bank_of_topic(topic) or shared.get(topic, "?")
    kept = int(headers["size"]) if headers.get("size", "").isdigit() else len(record.value or b"")
    size = kept + len(record.key or b"")  # a customer's message is kept as its size only
    return Letter(headers.get("reason", "?"), headers.get("error", ""), where, bank, size)


def select(letters: Iterable[Letter], banks: list[str]) -> list[Letter]:
    return [m for m in letters if not banks or m.bank in banks]


async def read(settings: Settings, banks: list[str]) -> list[Letter]:
    dead = await kafka.read_all(settings, catalog.DLQ, missing="run `passerelle topics create`")
    return select((letter(r) for r in dead), banks)


def show(letters: list[Letter], say: Say = print) -> None:
    for m in letters:
        say(f"{m.source}  {m.reason}  {m.size} bytes  {m.error}")
    say(f"{len(letters)} dead letters")


def count(letters: list[Letter], say: Say = print) -> None:
    by = Counter((m.bank, m.reason) for m in letters)
    for (bank, reason), n in sorted(by.items()):
        say(f"{bank:24} {reason:20} {n:>8}")
    say(f"{'total':45} {len(letters):>8}")
