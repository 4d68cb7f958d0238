"""The banks' outcome feeds without a broker: what the audit trail and the DLQ say of a
bank's record becomes one outcome on that bank's feed, with its transaction id,
offsets, outcome and reason, and nothing else; what is not a bank's record tells no one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams import catalog, feeds, model
from streams.agents import ingest, outcomes
from streams.agents.accounts import Accounts
from streams.codec import Codec
from streams.core.spec import Emit
from streams.core.store import PartitionStore
from streams.crypto import Keyring
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.settings import Settings
from streams.stream import Source, dead_letter_headers
from tests import samples

ALPINE = "banque-alpine"
THAMES = "thames-bank"
ALPINE_TOPIC = catalog.bank_topic_name(ALPINE)
AT = samples.BOOKED_AT + 1_000


def landed(emit: Emit, offset: int = 0) -> Any:
    """The emitted record as the outcomes stage reads it back from its topic."""
    return ConsumerRecord(
        emit.topic, 0, offset, AT, 0, emit.key, emit.value, None, 0, 0, list(emit.headers)
    )


def told(codec: Codec, emit: Emit) -> list[tuple[str, bytes | None, dict[str, Any]]]:
    """What the outcomes stage writes for one audit or DLQ record: (topic, key, outcome)."""
    spec = outcomes.spec(codec)
    written = spec.handler(landed(emit), None)  # type: ignore[arg-type]  # stateless
    return [(e.topic, e.key, codec.decode(model.BANK_OUTCOME, e.value or b"")) for e in written]


def decision(codec: Codec, **changes: Any) -> Emit:
    record = {**samples.DECISION, **changes}
    return Emit(catalog.AUDIT, b"k0:hash", codec.encode(model.DECISION, record))


def test_a_decision_becomes_one_outcome_on_its_banks_feed_keyed_by_source_partition(
    codec: Codec,
) -> None:
    """The bank's transaction id, offsets, outcome and reason, on its own feed."""
    [(topic, key, outcome)] = told(codec, decision(codec))
    assert (topic, key) == ("bank.banque-alpine.outcomes.v1", b"3")
    assert outcome == {
        "transaction_id": "tx-000001",
        "source_partition": 3,
        "source_offset": 1_234_567,
        "outcome": "WITHHELD",
        "reason": "REVOKED",
        "decided_at": samples.DECISION["decided_at"],
    }


def test_an_outcome_carries_no_account_hash_consent_or_bank_name(codec: Codec) -> None:
    """The feed's bytes hold nothing of the account, the consent or the audit's key."""
    emit = outcomes.feed_record(codec, *(feeds.decided(codec, landed(decision(codec))) or ()))
    for secret in (samples.DECISION["account_hash"], "cns-42", ALPINE):
        assert secret.encode() not in (emit.value or b"") + (emit.key or b"")


def test_a_decision_is_told_to_the_bank_of_its_source_topic_not_the_one_it_names(
    codec: Codec,
) -> None:
    """A record on alpine's topic that says thames is alpine's to hear about."""
    [(topic, _, _)] = told(codec, decision(codec, bank_id=THAMES))
    assert topic == catalog.outcomes_topic_name(ALPINE)


@pytest.mark.parametrize(
    "emit",
    [
        Emit(catalog.AUDIT, b"k", None),
        Emit(catalog.AUDIT, b"k", b"\x00\x00\x00\x00\x63not avro"),
        Emit(catalog.AUDIT, b"k", b"junk"),
    ],
    ids=["no value", "unknown schema id", "no frame"],
)
def test_an_unreadable_audit_record_tells_no_one(codec: Codec, emit: Emit) -> None:
    assert told(codec, emit) == []


def test_an_erasure_receipt_and_a_decision_on_no_ingest_topic_tell_no_one(codec: Codec) -> None:
    receipt = Emit(
        catalog.AUDIT, b"k", codec.encode(model.ERASURE_RECEIPT, samples.ERASURE_RECEIPT)
    )
    assert told(codec, receipt) == []
    assert told(codec, decision(codec, source_topic=catalog.CONSENTS)) == []


def test_what_ingest_dead_letters_is_told_to_the_topic_bank_with_its_reason(
    codec: Codec, tmp_path: Path
) -> None:
    """A transaction on alpine's topic that claims thames goes to the DLQ (BANK_MISMATCH),
    through its account's stream, sealed; read back from the DLQ, it is alpine's
    DEAD_LETTERED outcome at its own offsets, with no transaction id (a dead letter may
    be unreadable)."""
    spoofed = codec.encode(model.TRANSACTION, {**samples.TRANSACTION, "bank_id": THAMES})
    arrived: Any = ConsumerRecord(
        ALPINE_TOPIC, 5, 42, AT, 0, samples.TRANSACTION["account_id"].encode(), spoofed,
        None, 0, 0, [],
    )  # fmt: skip
    handled = ingest.spec(codec, "app.accounts", Metrics(CollectorRegistry())).handler
    [passed] = handled(arrived, None)  # type: ignore[arg-type]  # ingest keeps no state
    assert passed.topic == "app.accounts"  # to be sealed by the accounts stage
    store = PartitionStore(tmp_path / "p0")
    accounts = Accounts(
        codec, KeyedHasher("k", "k0"), catalog.Catalog(Settings(app_id="app")),
        Metrics(CollectorRegistry()), Keyring.development(),
    )  # fmt: skip
    read: Any = ConsumerRecord(
        "app.accounts", 0, 0, AT, 0, passed.key, passed.value, None, 0, 0, list(passed.headers)
    )
    [dead] = accounts.handle(read, store)
    assert dead.topic == catalog.DLQ
    [(topic, key, outcome)] = told(codec, dead)
    assert (topic, key) == (catalog.outcomes_topic_name(ALPINE), b"5")
    assert outcome == {
        "transaction_id": None,
        "source_partition": 5,
        "source_offset": 42,
        "outcome": "DEAD_LETTERED",
        "reason": "BANK_MISMATCH",
        "decided_at": AT,
    }


@pytest.mark.parametrize(
    "headers",
    [
        dead_letter_headers("SCHEMA_INVALID", "x", Source(catalog.CONSENTS, 0, 1)),
        dead_letter_headers("SCHEMA_INVALID", "x", Source(catalog.INBOUND, 0, 1)),
        (("reason", b"PROCESSING_ERROR"), ("error", b"scan")),  # an account scan's: no source
    ],
    ids=["a consent", "a customer's message", "no source"],
)
def test_a_dead_letter_of_no_banks_record_tells_no_one(codec: Codec, headers: Any) -> None:
    assert told(codec, Emit(catalog.DLQ, b"k", None, headers=headers)) == []


def test_a_dead_letters_reason_is_cut_to_a_short_code(codec: Codec) -> None:
    """The DLQ is written by the messaging workers too: a header is not trusted for length."""
    headers = dead_letter_headers("X" * 10_000, "x", Source(ALPINE_TOPIC, 1, 2))
    [(_, _, outcome)] = told(codec, Emit(catalog.DLQ, b"k", None, headers=headers))
    assert outcome["reason"] == "X" * feeds.MAX_REASON
