"""The ingest stage's handler without a broker: each kind of record in, what it writes
out, and that what it writes on the per-account stream is what accounts reads back
(`streams.stream`, the one contract of that stream)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams import catalog, stream
from streams.agents import ingest
from streams.codec import Codec
from streams.core.spec import Emit
from streams.metrics import Metrics
from streams.model import CONSENT, TRANSACTION
from tests import samples

STREAM = "app.accounts"
BANK = samples.TRANSACTION["bank_id"]
ACCOUNT = samples.TRANSACTION["account_id"]
ACCOUNT_KEY = f"{BANK}:{ACCOUNT}".encode()
BANK_TOPIC = catalog.bank_topic_name(BANK)
ARRIVED = samples.BOOKED_AT + 60_000


def arriving(topic: str, key: bytes | None, value: bytes | None, offset: int = 7) -> Any:
    return ConsumerRecord(topic, 2, offset, ARRIVED, 0, key, value, None, 0, 0, [])


def handle(codec: Codec, record: Any) -> list[Emit]:
    spec = ingest.spec(codec, STREAM, Metrics(CollectorRegistry()))
    return list(spec.handler(record, None))  # type: ignore[arg-type]  # ingest keeps no state


def read_back(emit: Emit) -> stream.StreamRecord:
    """The emitted record as the accounts stage reads it from the per-account stream."""
    record: Any = ConsumerRecord(
        emit.topic, 0, 0, ARRIVED, 0, emit.key, emit.value, None, 0, 0, list(emit.headers)
    )
    return stream.read(record)


def headers(emit: Emit) -> dict[str, bytes]:
    return dict(emit.headers)


def test_a_valid_transaction_travels_unchanged_to_its_account_with_its_source(
    codec: Codec,
) -> None:
    """A bank's valid transaction becomes one per-account stream record keyed by its
    account, its frame unchanged, read back as a transaction from the bank topic's
    coordinates."""
    frame = codec.encode(TRANSACTION, samples.TRANSACTION)
    [out] = handle(codec, arriving(BANK_TOPIC, ACCOUNT.encode(), frame))
    assert (out.topic, out.key, out.value) == (STREAM, ACCOUNT_KEY, frame)
    assert read_back(out) == stream.TransactionFrame(
        ACCOUNT_KEY, frame, stream.Source(BANK_TOPIC, 2, 7)
    )


def test_a_valid_consent_travels_unchanged_to_its_account(codec: Codec) -> None:
    """A valid consent becomes a consent record of its account's stream, frame unchanged."""
    frame = codec.encode(CONSENT, samples.CONSENT)
    [out] = handle(codec, arriving(catalog.CONSENTS, ACCOUNT_KEY, frame))
    assert (out.topic, out.key) == (STREAM, ACCOUNT_KEY)
    assert read_back(out) == stream.ConsentFrame(ACCOUNT_KEY, frame)


def test_a_consent_tombstone_travels_as_an_erasure(codec: Codec) -> None:
    """A tombstone on consents.v1 reaches its account as a consent without a value."""
    [out] = handle(codec, arriving(catalog.CONSENTS, ACCOUNT_KEY, None))
    assert read_back(out) == stream.ConsentFrame(ACCOUNT_KEY, None)


def test_an_unreadable_consent_is_dead_lettered_and_its_account_withholds(
    codec: Codec,
) -> None:
    """A consent that cannot be decoded goes to its account as the marker that withholds
    everything (fail closed), carrying its bytes, reason and coordinates: the accounts
    stage dead-letters it, sealed with the account's key."""
    [marker] = handle(codec, arriving(catalog.CONSENTS, ACCOUNT_KEY, b"\x00garbage"))
    assert (marker.topic, marker.key, marker.value) == (STREAM, ACCOUNT_KEY, b"\x00garbage")
    assert headers(marker)["source-topic"] == catalog.CONSENTS.encode()
    assert headers(marker)["source-offset"] == b"7"
    dead = stream.Dead("UNKNOWN_SCHEMA_ID", headers(marker)["error"].decode())
    assert read_back(marker) == stream.UnreadableConsent(ACCOUNT_KEY, dead)


def test_a_consent_whose_key_names_no_account_is_dead_lettered_alone(codec: Codec) -> None:
    """Without an account in its key there is nothing to withhold, and nothing could erase
    its bytes by account: the dead letter says why, where and how long, not what."""
    frame = codec.encode(CONSENT, samples.CONSENT)
    [dead] = handle(codec, arriving(catalog.CONSENTS, b"no-account", frame))
    assert (dead.topic, headers(dead)["reason"]) == (catalog.DLQ, b"BAD_KEY")
    assert dead.value is None and headers(dead)["size"] == str(len(frame)).encode()


@pytest.mark.parametrize(
    ("why", "key", "changes", "reason"),
    [
        ("another bank's record", ACCOUNT.encode(), {"bank_id": "banque-noire"}, b"BANK_MISMATCH"),
        ("keyed by another account", b"FR76-other", {}, b"KEY_MISMATCH"),
        (
            "an amount beyond any real one",
            ACCOUNT.encode(),
            {"amount_minor": 10**13},
            b"BAD_AMOUNT",
        ),
    ],
)
def test_a_transaction_that_breaks_a_rule_is_dead_lettered_with_its_reason(
    codec: Codec, why: str, key: bytes, changes: dict[str, Any], reason: bytes
) -> None:
    """A decodable transaction that breaks an ingest rule goes, bytes unchanged, to the
    stream of the account its key names as a dead record (the accounts stage seals it
    into the DLQ), with the rule's reason and its bank topic's coordinates."""
    frame = codec.encode(TRANSACTION, {**samples.TRANSACTION, **changes})
    [dead] = handle(codec, arriving(BANK_TOPIC, key, frame))
    named = f"{BANK}:{key.decode()}".encode()
    assert (dead.topic, dead.key, dead.value) == (STREAM, named, frame), why
    assert headers(dead)["source-topic"] == BANK_TOPIC.encode()
    read = read_back(dead)
    assert isinstance(read, stream.DeadRecord) and read.dead.reason == reason.decode(), why


@pytest.mark.parametrize(
    ("value", "reason"), [(None, b"NO_VALUE"), (b"\x00\x00\x00\x00\x63junk", b"UNKNOWN_SCHEMA_ID")]
)
def test_a_transaction_that_cannot_be_read_is_dead_lettered_with_its_reason(
    codec: Codec, value: bytes | None, reason: bytes
) -> None:
    """No value, or a frame of no schema we know: to be sealed for its account, with the
    reason."""
    [dead] = handle(codec, arriving(BANK_TOPIC, ACCOUNT.encode(), value))
    assert (dead.topic, headers(dead)["reason"]) == (STREAM, reason)


@pytest.mark.parametrize("key", [None, b"", b"\xff\xfe", b"x" * 65])
def test_a_transaction_whose_key_names_no_account_is_dead_lettered_as_its_size(
    codec: Codec, key: bytes | None
) -> None:
    """No key, or one that cannot be an account number: nothing could erase its bytes by
    account, so the DLQ gets its reason, coordinates and size only."""
    [dead] = handle(codec, arriving(BANK_TOPIC, key, b"\x07 twelve bytes"))
    assert (dead.topic, dead.value) == (catalog.DLQ, None)
    assert headers(dead)["size"] == b"14" and headers(dead)["source-offset"] == b"7"


def test_a_record_without_a_kind_reads_as_a_transaction_of_unknown_source() -> None:
    """A per-account stream record without headers (written before kinds were headers)
    is a transaction; its source is unknown, never guessed."""
    read = read_back(Emit(STREAM, ACCOUNT_KEY, b"frame"))
    assert read == stream.TransactionFrame(ACCOUNT_KEY, b"frame", stream.UNKNOWN_SOURCE)


def test_a_value_too_large_to_be_a_frame_is_kept_as_its_size(codec: Codec) -> None:
    """Over 64 KiB is no frame of ours: not carried to be sealed, the DLQ gets its reason
    and size (the bank's topic has the bytes); a consent's account still withholds."""
    big = b"\x00" * (65 * 1024)
    [dead] = handle(codec, arriving(BANK_TOPIC, ACCOUNT.encode(), big))
    assert (dead.topic, dead.value, headers(dead)["size"]) == (catalog.DLQ, None, b"66560")
    dead, marker = handle(codec, arriving(catalog.CONSENTS, ACCOUNT_KEY, big))
    assert (dead.topic, dead.value, headers(dead)["reason"]) == (catalog.DLQ, None, b"TOO_LARGE")
    assert read_back(marker) == stream.UnreadableConsent(ACCOUNT_KEY)
