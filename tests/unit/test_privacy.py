"""The record of processing is generated from the catalog, the schemas and the ACLs:
nothing can be added to them without its entry, and the record says what they say."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from streams import catalog, privacy, security
from streams.catalog import Catalog
from streams.codec import EmbeddedRegistry
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registry() -> EmbeddedRegistry:
    return EmbeddedRegistry.load()


@pytest.fixture(scope="module")
def entries(registry: EmbeddedRegistry) -> dict[str, privacy.Entry]:
    return {e.topic: e for e in privacy.record(Catalog(Settings()), registry)}


def test_every_field_of_every_schema_version_has_a_known_data_category(
    registry: EmbeddedRegistry,
) -> None:
    """A schema field without a `"data"` annotation naming a category fails here."""
    for subject in registry.subjects():
        for version in registry.versions(subject):
            assert privacy.field_categories(version.definition)


def test_a_field_without_its_category_is_refused() -> None:
    """The check above can fail: a new field, nested in a record, with no annotation."""
    iban: dict[str, str] = {"name": "iban", "type": "string"}
    nested = {"type": "record", "name": "Inner", "fields": [iban]}
    schema = {
        "type": "record",
        "name": "Outer",
        "fields": [
            {"name": "id", "data": "reference", "type": "string"},
            {"name": "inner", "type": ["null", nested]},
        ],
    }
    with pytest.raises(ValueError, match=r"Outer: no known data category for \['inner.iban'\]"):
        privacy.field_categories(schema)
    iban["data"] = "account-numbr"  # a typo is not a category either
    with pytest.raises(ValueError, match=r"inner\.iban"):
        privacy.field_categories(schema)


def test_every_topic_of_the_catalog_has_its_entry(entries: dict[str, privacy.Entry]) -> None:
    """A topic added to the catalog without a purpose and what its key carries fails the
    record; the record has no entry for a topic the catalog lacks."""
    cat = Catalog(Settings())
    assert len(entries) == len(cat.all(["b"]))
    assert set(entries) == set(privacy.PURPOSES) == set(privacy.KEY_DATA)
    assert set(privacy.VALUE_DATA) <= set(entries)
    for declared in (*privacy.KEY_DATA.values(), *privacy.VALUE_DATA.values()):
        assert set(declared) <= set(privacy.CATEGORIES)


def test_a_topic_without_its_entry_fails_the_record(
    registry: EmbeddedRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog gains a topic nobody described: the record refuses to be built."""
    extra = dataclasses.replace(Catalog(Settings()).bank("b"), name="passerelle.extra.v1")
    real = Catalog.shared
    monkeypatch.setattr(Catalog, "shared", lambda self: [*real(self), extra])
    with pytest.raises(KeyError, match=r"passerelle\.extra\.v1"):
        privacy.record(Catalog(Settings()), registry)


def test_every_principal_of_the_acls_is_described() -> None:
    """A principal granted anything must say who it is in the record."""
    acls = security.desired(Catalog(Settings()), ["some-bank"])
    principals = {a.principal.removeprefix("User:") for a in acls}
    described = {p.replace(privacy.BANK, "some-bank") for p in privacy.PRINCIPALS}
    assert principals == described


def test_readers_are_what_the_acls_grant(entries: dict[str, privacy.Entry]) -> None:
    """Who may read each sensitive topic, as the ACLs' desired state grants it."""
    assert entries[catalog.DLQ].recipients == ("passerelle", "sre")
    assert entries[catalog.AUDIT].recipients == ("passerelle", "sre")
    assert entries[catalog.CONSENTS].recipients == ("consent-authority", "passerelle")
    assert entries[catalog.NOTIFICATIONS].recipients == ("messenger-worker",)
    assert entries["bank.<bank_id>.outcomes.v1"].recipients == ("bank-<bank_id>", "passerelle")
    assert entries["<app>.accounts"].recipients == ("passerelle",)


def test_categories_come_from_the_schemas(entries: dict[str, privacy.Entry]) -> None:
    """A topic's value categories are its schemas' fields': the bank's topic carries the
    account in clear; the audit trail only its keyed hash; a feed nothing of a person."""
    assert "account-number" in entries["bank.<bank_id>.transactions.v1"].value
    assert "account-number" not in entries[catalog.AUDIT].value
    assert "pseudonym" in entries[catalog.AUDIT].value
    personal = set(privacy.CATEGORIES) - {"operational", "reference"}
    assert not personal & set(entries["bank.<bank_id>.outcomes.v1"].value)
    assert "message" in entries[catalog.NOTIFICATIONS].value
    assert entries[catalog.NOTIFICATIONS].disclosed is not None


def test_retention_and_erasure_follow_the_topic_config(entries: dict[str, privacy.Entry]) -> None:
    """The DLQ says its 14 days and that an erasure shreds an account's letters (they hold
    nothing else readable); the audit trail that nothing erases it record by record; a
    compacted topic says its tombstone and bound."""
    assert entries[catalog.DLQ].retention == "14 days, then deleted"
    assert entries[catalog.DLQ].erasure.startswith("shredded")
    assert entries[catalog.DLQ].value == ("sealed",)
    assert entries[catalog.AUDIT].erasure.startswith("none record by record")
    assert entries[catalog.CONSENTS].erasure.endswith("within 2 h")


def test_the_privacy_guide_embeds_the_record_as_generated(
    entries: dict[str, privacy.Entry],
) -> None:
    """docs/privacy.md carries the record between its markers, as `passerelle privacy
    record` prints it today."""
    text = (REPO / "docs" / "privacy.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- record:start -->\n(.*)\n<!-- record:end -->", text, re.S)
    assert found, "docs/privacy.md lacks the record's markers"
    assert found.group(1) == "\n".join(privacy.lines(list(entries.values())))
