"""The per-account stream's contract: which records travel on it, and how they are told apart.

Ingest writes every record of an account to one partition of
`<app_id>.accounts`, keyed `<bank_id>:<account_id>`, with a `kind` header and
the coordinates of the bank or consent record it came from; the ticker writes
tick records under the tick key. `encode_headers` and `read` are the one pair
both stages use: ingest writes with the first, accounts reads with the second
into one of four typed records. The Avro frames travel unchanged (the accounts
stage decodes them once).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from streams.core.ticks import TICK_KEY, tick_time

__all__ = [
    "KIND_CONSENT",
    "KIND_TRANSACTION",
    "KIND_UNREADABLE_CONSENT",
    "TICK_KEY",
    "ConsentFrame",
    "Source",
    "Tick",
    "TransactionFrame",
    "UnreadableConsent",
    "encode_headers",
    "read",
]

KIND_TRANSACTION = b"transaction"
"""The bank's Avro frame, unchanged."""
KIND_CONSENT = b"consent"
"""The consent authority's Avro frame, unchanged; no value: a tombstone (erase)."""
KIND_UNREADABLE_CONSENT = b"consent-unreadable"
"""No value: a consent record for this account was dead-lettered. The account
withholds every output until a newer readable consent arrives (fail closed)."""

SOURCE_HEADERS = ("source-topic", "source-partition", "source-offset")


@dataclass(frozen=True)
class Source:
    """Where a record entered the pipeline: a bank topic's (or consents.v1's) coordinates."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> Source:
        """The record's own coordinates."""
        return cls(record.topic, record.partition, record.offset)

    @classmethod
    def carried(cls, record: ConsumerRecord[bytes, bytes]) -> Source | None:
        """The coordinates a per-account stream record carries, if it carries them all."""
        found = {k: v for k, v in record.headers if k in SOURCE_HEADERS}
        if len(found) != len(SOURCE_HEADERS):
            return None
        try:
            partition, offset = int(found["source-partition"]), int(found["source-offset"])
        except ValueError:
            return None
        return cls(found["source-topic"].decode(errors="replace"), partition, offset)

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return (
            ("source-topic", self.topic.encode()),
            ("source-partition", str(self.partition).encode()),
            ("source-offset", str(self.offset).encode()),
        )


UNKNOWN_SOURCE = Source("", -1, -1)


def encode_headers(kind: bytes, source: Source) -> tuple[tuple[str, bytes], ...]:
    """The headers of a per-account stream record of `kind` that came from `source`."""
    return (("kind", kind), *source.headers())


@dataclass(frozen=True)
class Tick:
    now: int


@dataclass(frozen=True)
class TransactionFrame:
    key: bytes
    frame: bytes
    source: Source


@dataclass(frozen=True)
class ConsentFrame:
    key: bytes
    frame: bytes | None
    """None: a tombstone."""


@dataclass(frozen=True)
class UnreadableConsent:
    key: bytes


StreamRecord = Tick | TransactionFrame | ConsentFrame | UnreadableConsent


def read(record: ConsumerRecord[bytes, bytes]) -> StreamRecord:
    """What a per-account stream record is. A record without a kind is a transaction
    (what ingest wrote before kinds were headers)."""
    now = tick_time(record)
    if now is not None:
        return Tick(now)
    key = record.key or b""
    kind = next((v for k, v in record.headers if k == "kind"), KIND_TRANSACTION)
    if kind == KIND_CONSENT:
        return ConsentFrame(key, record.value)
    if kind == KIND_UNREADABLE_CONSENT:
        return UnreadableConsent(key)
    return TransactionFrame(key, record.value or b"", Source.carried(record) or UNKNOWN_SOURCE)
