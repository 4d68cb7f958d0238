"""The internal streams' contract: which records travel on them, and how they are told apart.

The per-account stream: ingest writes every record of an account to one
partition of `<app_id>.accounts`, keyed `<bank_id>:<account_id>`, with a
`kind` header and the coordinates of the bank or consent record it came from;
the ticker writes tick records under the tick key; the conversation stage
writes a customer's question (`request`, one per account of the psid), and
`unreachable` when the delivery worker could not reach the psid.
`encode_headers` and `read` are the one pair all stages use. The Avro frames
travel unchanged (the accounts stage decodes them once).

The psid stream (`<app_id>.psids`, keyed by psid): ingest writes each inbound
message there as what it asks (`Inbound`: its id, page, intent and time; the
text itself is not copied); the accounts stage writes `link`
when a consent names the psid and `unlink` when it stops naming it; ingest
writes `unreachable` from the delivery worker's reports. The
conversation stage reads them in one order with `read_psid`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from aiokafka.structs import ConsumerRecord

from streams.core.ticks import TICK_KEY, tick_time
from streams.rules.replies import Asked

__all__ = [
    "KIND_CONSENT",
    "KIND_DEAD",
    "KIND_INBOUND",
    "KIND_LINK",
    "KIND_REQUEST",
    "KIND_TRANSACTION",
    "KIND_UNLINK",
    "KIND_UNREACHABLE",
    "KIND_UNREADABLE_CONSENT",
    "TICK_KEY",
    "ConsentFrame",
    "Dead",
    "DeadRecord",
    "Inbound",
    "Link",
    "Request",
    "Source",
    "Tick",
    "TransactionFrame",
    "Unlink",
    "Unreachable",
    "UnreadableConsent",
    "bank_of",
    "dead_letter_headers",
    "encode_headers",
    "encode_inbound",
    "read",
    "read_psid",
]

KIND_TRANSACTION = b"transaction"
"""The bank's Avro frame, unchanged."""
KIND_CONSENT = b"consent"
"""The consent authority's Avro frame, unchanged; no value: a tombstone (erase)."""
KIND_UNREADABLE_CONSENT = b"consent-unreadable"
"""A consent record for this account was dead-lettered. The account withholds
every output until a newer readable consent arrives (fail closed). The value is
the record's bytes, with the dead letter's headers (`reason`, `error`): the
accounts stage writes its dead letter, sealed (`DeadRecord`). No value and no
reason: written before ingest passed dead letters on (it wrote them itself)."""
KIND_DEAD = b"dead"
"""A bank's record for this account that ingest dead-lettered (the value: its bytes,
headers `reason` and `error`): the accounts stage writes it to the DLQ, sealed with
the account's data key (`agents.sealing`), so the account's erasure shreds it."""

KIND_REQUEST = b"request"
"""A customer's question or control for this account (JSON of `replies.Asked`)."""
KIND_INBOUND = b"inbound"
"""On the psid stream: a customer's message, as what it asks (JSON of `Inbound`)."""
KIND_LINK = b"link"
"""On the psid stream: a consent names this psid for an account (JSON of `Link`)."""
KIND_UNLINK = b"unlink"
"""On the psid stream: a consent no longer names this psid for an account."""
KIND_UNREACHABLE = b"unreachable"
"""On the psid stream (from ingest) then on the per-account stream (from the
conversation stage): the delivery worker could not reach this psid with a
notification sent under a consent (the value: that consent's id)."""

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


def dead_letter_headers(
    reason: str, detail: str, source: Source, size: int | None = None
) -> tuple[tuple[str, bytes], ...]:
    """The headers of a dead letter (`passerelle.dlq.v1`): why (`reason`, a code; `error`,
    a message quoting no payload), where it came from, and, when its bytes are not kept,
    how long it was (`size`). Every writer of dead letters uses these."""
    headers = (("reason", reason.encode()), ("error", detail.encode()), *source.headers())
    return headers if size is None else (*headers, ("size", str(size).encode()))


def bank_of(key: bytes | None) -> str:
    """The bank of a per-account stream key `<bank_id>:<account_id>` (a metric label)."""
    bank, sep, _ = (key or b"").partition(b":")
    return bank.decode(errors="replace") if sep else "unknown"


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
class Dead:
    """Why ingest dead-lettered a record of an account (the DLQ's `reason`, `error`)."""

    reason: str
    detail: str

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return (("reason", self.reason.encode()), ("error", self.detail.encode()))


@dataclass(frozen=True)
class DeadRecord:
    """A bank's record of this account, dead-lettered by ingest: to seal and keep."""

    key: bytes
    dead: Dead


@dataclass(frozen=True)
class UnreadableConsent:
    key: bytes
    dead: Dead | None = None
    """Its dead letter to seal and keep; None: ingest kept it (before `KIND_DEAD`)."""


@dataclass(frozen=True)
class Request:
    key: bytes
    asked: Asked


@dataclass(frozen=True)
class Unreachable:
    """A notification sent under `consent_id` could not reach its recipient. `key` is
    the record's key: the psid on the psid stream, the account on the per-account one."""

    key: bytes
    consent_id: str


StreamRecord = (
    Tick | TransactionFrame | ConsentFrame | UnreadableConsent | DeadRecord | Request | Unreachable
)


def encode_request(asked: Asked) -> bytes:
    return json.dumps(asdict(asked), separators=(",", ":")).encode()


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
        return UnreadableConsent(key, _dead(record))
    if kind == KIND_DEAD:
        return DeadRecord(key, _dead(record) or Dead("?", ""))
    if kind == KIND_REQUEST:
        return Request(key, Asked(**json.loads(record.value or b"{}")))
    if kind == KIND_UNREACHABLE:
        return Unreachable(key, (record.value or b"").decode())
    return TransactionFrame(key, record.value or b"", Source.carried(record) or UNKNOWN_SOURCE)


def _dead(record: ConsumerRecord[bytes, bytes]) -> Dead | None:
    """Why ingest dead-lettered the record this one carries, if it says."""
    headers = dict(record.headers)
    if "reason" not in headers:
        return None
    return Dead(headers["reason"].decode(errors="replace"), headers.get("error", b"").decode())


@dataclass(frozen=True)
class Link:
    """An account a consent links to a psid, with what an answer about it needs."""

    account: str
    """The per-account stream's key, `<bank_id>:<account_id>`."""
    locale: str


@dataclass(frozen=True)
class Inbound:
    """A customer's message as ingest passes it on: what it asks, never what it says."""

    mid: str
    page_id: str
    intent: str | None
    """The intent ingest read in it (`rules.intents`), or None: not understood."""
    sent_at: int


def encode_inbound(inbound: Inbound) -> bytes:
    return json.dumps(asdict(inbound), separators=(",", ":")).encode()


@dataclass(frozen=True)
class Unlink:
    account: str


PsidRecord = Inbound | Link | Unlink | Unreachable


def encode_link(link: Link) -> bytes:
    return json.dumps(asdict(link), separators=(",", ":")).encode()


def read_psid(record: ConsumerRecord[bytes, bytes]) -> tuple[bytes, PsidRecord]:
    """What a psid stream record is, with its psid (the key)."""
    psid = record.key or b""
    kind = next((v for k, v in record.headers if k == "kind"), KIND_INBOUND)
    if kind == KIND_LINK:
        return psid, Link(**json.loads(record.value or b"{}"))
    if kind == KIND_UNLINK:
        return psid, Unlink((record.value or b"").decode())
    if kind == KIND_UNREACHABLE:
        return psid, Unreachable(psid, (record.value or b"").decode())
    return psid, Inbound(**json.loads(record.value or b"{}"))
