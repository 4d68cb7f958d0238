"""The registry's answers without HTTP: which subject a serializer's name means, and
what is looked up or refused."""

from __future__ import annotations

import json

import pytest

from streams import model
from streams.codec import DEFAULT_SCHEMAS_DIR, EmbeddedRegistry
from streams.schema_api import SchemaApi

API = SchemaApi(EmbeddedRegistry.load())


@pytest.mark.parametrize(
    ("asked", "subject"),
    [
        ("passerelle.Transaction", model.TRANSACTION),
        ("bank.credit-breton.transactions.v1-value", model.TRANSACTION),
        ("consents.v1-value", model.CONSENT),
        ("messenger.notifications.v1-value", model.NOTIFICATION),
        ("bank.credit-breton.transactions.v1-key", None),  # keys are strings, not Avro
        ("bank.Bad_Bank.transactions.v1-value", None),  # not a bank topic's name
        ("passerelle.audit.v1-value", None),  # two record types: RecordNameStrategy
        ("passerelle.Unknown", None),
    ],
)
def test_a_serializers_subject_names_the_record_its_topic_carries(
    asked: str, subject: str | None
) -> None:
    """TopicNameStrategy's `<topic>-value` means the one record type of that topic."""
    assert API.subject(asked) == subject


def test_the_contracts_schema_is_found_with_its_pinned_id_and_another_is_refused() -> None:
    """Registering the contract's own schema answers its id; a changed one is refused as
    read-only (42205) and a lookup of it is not found (40403)."""
    v1 = json.loads((DEFAULT_SCHEMAS_DIR / "Transaction.v1.avsc").read_text())
    assert API.lookup("passerelle.Transaction", {"schema": json.dumps(v1)}, True).body == {"id": 1}
    v1["fields"] = v1["fields"][:-1]
    changed = {"schema": json.dumps(v1)}
    assert API.lookup("passerelle.Transaction", changed, True).body["error_code"] == 42205
    assert API.lookup("passerelle.Transaction", changed, False).body["error_code"] == 40403


def test_a_subjects_compatibility_is_its_mode_checked_transitively() -> None:
    """`schemas check` checks each version against every earlier one: the registry says
    so in Confluent's terms, for a subject asked by its record or its topic's name."""
    assert API.config("messenger.notifications.v1-value").body == {
        "compatibilityLevel": "BACKWARD_TRANSITIVE"
    }
    assert API.config(model.WITHDRAWAL_REQUEST).body == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert API.config(model.TRANSACTION).body == {"compatibilityLevel": "BACKWARD_TRANSITIVE"}
    assert API.config("passerelle.audit.v1-value").body["error_code"] == 40401
