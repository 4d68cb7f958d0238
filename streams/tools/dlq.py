"""What the dead-letter topic holds: each record's reason and where it came from.

A dead letter of an account keeps the original bytes sealed with the account's
data key, keyed by its hash; any other keeps its size only (docs/runbook.md).
`show` and `count` print only the headers an operator needs to act: the reason
code, the message, the source topic, partition and offset, and the size of what
was kept. `show --decrypt` (break-glass) also opens each sealed letter: it needs
the key-encryption keys (PASSERELLE_KEK_FILE) and to read the accounts stage's
changelog, where the wrapped data keys are; a letter whose account was erased
since says `shredded`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams import catalog, crypto, kafka
from streams.codec import Codec
from streams.errors import CodecError
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
    account: str | None = None
    """The account's keyed hash, when the letter is sealed for one."""
    sealed: bytes | None = None


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
    why = (headers.get("reason", "?"), headers.get("error", ""), where, bank, size)
    if "sealed" in headers and record.key:
        return Letter(*why, account=record.key.decode(errors="replace"), sealed=record.value)
    return Letter(*why)


def select(letters: Iterable[Letter], banks: list[str]) -> list[Letter]:
    return [m for m in letters if not banks or m.bank in banks]


async def read(settings: Settings, banks: list[str]) -> list[Letter]:
    dead = await kafka.read_all(settings, catalog.DLQ, missing="run `passerelle topics create`")
    return select((letter(r) for r in dead), banks)


def show(letters: list[Letter], say: Say = print) -> None:
    for m in letters:
        say(f"{m.source}  {m.reason}  {m.size} bytes  {m.error}")
    say(f"{len(letters)} dead letters")


async def data_keys(settings: Settings) -> dict[str, bytes]:
    """The wrapped data key of every account that has one now (the accounts changelog's
    `keys` table, its latest record per key; a tombstone: shredded)."""
    changelog = catalog.Catalog(settings).changelog("accounts").name
    prefix = crypto.KEYS_TABLE.encode() + b"\x00"
    kept: dict[str, bytes | None] = {}
    missing = f"set PASSERELLE_APP_ID to the workers' app id (it names {changelog})"
    for r in await kafka.read_all(settings, changelog, missing=missing):
        if r.key and r.key.startswith(prefix):
            kept[r.key[len(prefix) :].decode()] = r.value
    return {account: raw for account, raw in kept.items() if raw is not None}


def opened(m: Letter, keys: dict[str, bytes], ring: crypto.Keyring, codec: Codec) -> str:
    """What a sealed letter holds, decoded where it is one of our records."""
    if m.account is None or m.sealed is None:
        return "not kept (it names no account)"
    raw = keys.get(m.account)
    if raw is None:
        return "shredded (its account was erased, or its key expired with its letters)"
    try:
        data_key = ring.unwrap(crypto.decode_key(raw)[0], m.account)
        value = crypto.open_sealed(data_key, m.sealed, m.account)
    except crypto.Unreadable as exc:
        return f"unreadable: {exc}"
    try:
        subject, record = codec.decode_any(value)
    except CodecError:
        return f"{len(value)} bytes, not a record of ours: {value[:64]!r}"
    return f"{subject} {json.dumps(record, default=str, ensure_ascii=False)}"


def show_opened(
    letters: list[Letter], keys: dict[str, bytes], ring: crypto.Keyring, codec: Codec,
    say: Say = print,
) -> None:  # fmt: skip
    for m in letters:
        say(f"{m.source}  {m.reason}  {m.account or '-'}  {opened(m, keys, ring, codec)}")
    say(f"{len(letters)} dead letters")


def count(letters: list[Letter], say: Say = print) -> None:
    by = Counter((m.bank, m.reason) for m in letters)
    for (bank, reason), n in sorted(by.items()):
        say(f"{bank:24} {reason:20} {n:>8}")
    say(f"{'total':45} {len(letters):>8}")
