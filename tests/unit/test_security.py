"""The design's ACLs as data: least privilege per principal, Kafka's own listing
read back exactly, and the fewest AclCommand calls to add what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import catalog, security
from streams.catalog import Catalog
from streams.security import Acl, add_commands, bank_principal, desired, parse_listing
from streams.settings import Settings
from streams.tools.kafkacli import client_properties

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CAT = Catalog(Settings())
WANT = desired(CAT, ["banque-alpine", "thames-bank"])


def of(principal: str) -> set[Acl]:
    return {a for a in WANT if a.principal == f"User:{principal}"}


def test_a_bank_may_write_its_own_topic_and_read_its_own_feed_only() -> None:
    assert {(a.resource, a.name, a.pattern, a.operation) for a in of("bank-banque-alpine")} == {
        ("TOPIC", "bank.banque-alpine.transactions.v1", "LITERAL", "WRITE"),
        ("TOPIC", "bank.banque-alpine.transactions.v1", "LITERAL", "DESCRIBE"),
        ("TOPIC", "bank.banque-alpine.outcomes.v1", "LITERAL", "READ"),
        ("TOPIC", "bank.banque-alpine.outcomes.v1", "LITERAL", "DESCRIBE"),
        ("GROUP", "bank-banque-alpine.", "PREFIXED", "READ"),
    }


def test_each_feed_is_read_by_its_bank_alone_and_written_by_passerelle_alone() -> None:
    for bank in ("banque-alpine", "thames-bank"):
        feed = {(a.principal, a.operation) for a in WANT if a.name == f"bank.{bank}.outcomes.v1"}
        assert feed == {
            (f"User:bank-{bank}", "READ"),
            (f"User:bank-{bank}", "DESCRIBE"),
            ("User:passerelle", "WRITE"),
            ("User:passerelle", "DESCRIBE"),
        }


def test_a_banks_group_prefix_does_not_cover_a_bank_whose_id_extends_it() -> None:
    """Bank `credit` may not join the consumer groups of bank `credit-breton`."""
    assert not security.bank_group_prefix("credit-breton").startswith(
        security.bank_group_prefix("credit")
    )


def test_only_passerelle_reads_ingest_and_nobody_else_writes_outputs() -> None:
    """Only passerelle reads the banks' topics and writes the outputs; the consents
    are read by passerelle and by their own writer, the consent authority."""
    readers = {a.principal for a in WANT if a.operation == "READ" and a.resource == "TOPIC"}
    ingest = {
        a.principal
        for a in WANT
        if a.operation == "READ" and a.name.startswith("bank.") and "outcomes" not in a.name
    }
    consents = {a.principal for a in WANT if a.operation == "READ" and a.name == catalog.CONSENTS}
    outputs = {catalog.NOTIFICATIONS, catalog.AUDIT}
    writers = {a.principal for a in WANT if a.operation == "WRITE" and a.name in outputs}
    dead_letters = {a.principal for a in WANT if a.operation == "WRITE" and a.name == catalog.DLQ}
    assert ingest == writers == {"User:passerelle"}
    assert dead_letters == {"User:passerelle", "User:messenger-worker"}  # the delivery worker's
    assert consents == {"User:passerelle", "User:consent-authority"}
    assert readers == {
        "User:passerelle",
        "User:messenger-worker",
        "User:sre",
        "User:consent-authority",
        "User:bank-banque-alpine",  # its own outcome feed
        "User:bank-thames-bank",
    }


def test_the_conversation_adds_one_write_for_messenger_and_one_read_for_the_authority() -> None:
    """Only passerelle reads inbound messages and writes withdrawal requests; only the
    messaging workers write the first and only the consent authority reads the second."""
    inbound = {(a.principal, a.operation) for a in WANT if a.name == catalog.INBOUND}
    requests = {(a.principal, a.operation) for a in WANT if a.name == catalog.REQUESTS}
    assert inbound == {
        ("User:messenger-worker", "WRITE"),
        ("User:messenger-worker", "DESCRIBE"),
        ("User:passerelle", "READ"),
        ("User:passerelle", "DESCRIBE"),
    }
    assert requests == {
        ("User:passerelle", "WRITE"),
        ("User:passerelle", "DESCRIBE"),
        ("User:consent-authority", "READ"),
        ("User:consent-authority", "DESCRIBE"),
    }


def test_messenger_and_sre_read_only_their_topics() -> None:
    """The messaging workers read the notifications only; they write what customers send,
    what became of each notification, and the delivery worker's dead letters."""
    messenger_reads = {a.name for a in of("messenger-worker") if a.operation == "READ"}
    assert messenger_reads == {catalog.NOTIFICATIONS, "messenger-"}  # the topic, its groups
    assert {a.name for a in of("sre") if a.resource == "TOPIC"} == {catalog.DLQ, catalog.AUDIT}
    assert not {a for a in of("sre") if a.operation == "WRITE"}
    messenger_writes = {a.name for a in of("messenger-worker") if a.operation == "WRITE"}
    assert messenger_writes == {catalog.INBOUND, catalog.FEEDBACK, catalog.DLQ}


def test_only_passerelle_reads_the_delivery_reports() -> None:
    feedback = {(a.principal, a.operation) for a in WANT if a.name == catalog.FEEDBACK}
    assert feedback == {
        ("User:messenger-worker", "WRITE"),
        ("User:messenger-worker", "DESCRIBE"),
        ("User:passerelle", "READ"),
        ("User:passerelle", "DESCRIBE"),
    }


def test_passerelle_groups_and_transactional_ids_are_its_app_ids_prefix() -> None:
    prefixed = {(a.resource, a.name) for a in of("passerelle") if a.pattern == "PREFIXED"}
    assert prefixed == {
        ("GROUP", "passerelle-"),
        ("TRANSACTIONAL_ID", "passerelle-"),
        ("TOPIC", "bank."),
    }


def test_a_bank_id_that_is_not_a_topic_part_is_refused() -> None:
    with pytest.raises(ValueError):
        bank_principal("Bank A")


def test_kafkas_listing_reads_back_as_the_acls_it_shows() -> None:
    """Golden output of AclCommand --list from Kafka 4.1.1, recorded before the
    conversation's and the delivery's topics and the banks' outcome feeds existed: it
    reads back as exactly what was wanted then."""
    listed = parse_listing((FIXTURES / "acl-list.txt").read_text())
    assert Acl("User:passerelle", "GROUP", "passerelle-", "PREFIXED", "READ") in listed
    assert {a.principal for a in listed} == {"User:bank-banque-alpine", "User:passerelle"}
    cat = Catalog(Settings())
    later = {catalog.INBOUND, catalog.REQUESTS, cat.psid_stream().name}
    later |= {cat.changelog("conversation").name, catalog.FEEDBACK}
    later |= {catalog.outcomes_topic_name(b) for b in ("banque-alpine", "thames-bank")}
    later |= {security.bank_group_prefix("banque-alpine")}
    read_before = {catalog.AUDIT, catalog.DLQ}  # passerelle's READ of them: the feeds' inputs
    purged = {cat.account_stream().name}  # passerelle's DELETE of it: the purge came later
    assert listed == {
        a
        for a in WANT
        if a.principal in {"User:bank-banque-alpine", "User:passerelle"}
        and a.name not in later
        and not (a.name in read_before and a.operation == "READ")
        and not (a.name in purged and a.operation == "DELETE")
    }


def test_missing_acls_become_one_call_per_principal_resource_type_and_operations() -> None:
    calls = add_commands(of("sre"))
    assert calls == [
        ["--add", "--allow-principal", "User:sre", "--resource-pattern-type", "PREFIXED",
         "--group", "sre-", "--operation", "READ"],
        ["--add", "--allow-principal", "User:sre", "--resource-pattern-type", "LITERAL",
         "--topic", catalog.AUDIT, "--topic", catalog.DLQ,
         "--operation", "DESCRIBE", "--operation", "READ"],
    ]  # fmt: skip
    assert add_commands([]) == []


def test_the_tools_client_config_carries_the_credentials_quoted() -> None:
    settings = Settings(
        security_protocol="SASL_PLAINTEXT", sasl_username="admin", sasl_password='p"w\\x'
    )
    text = client_properties(settings)
    assert "security.protocol=SASL_PLAINTEXT" in text
    assert "sasl.mechanism=SCRAM-SHA-512" in text
    assert 'ScramLoginModule required username="admin" password="p\\"w\\\\x";' in text


# AclCommand --list's shape (as in acl-list.txt), with one binding of each drift shape.
DRIFT_LISTING = (FIXTURES / "acl-drift.txt").read_text()
DRIFT_SHAPES = {
    "wildcard principal": Acl("User:*", "TOPIC", "consents.v1", "LITERAL", "READ"),
    "host-bound": Acl(
        "User:bank-banque-alpine", "TOPIC", "consents.v1", "LITERAL", "READ", "127.0.0.1"
    ),
    "DENY": Acl("User:passerelle", "TOPIC", "consents.v1", "LITERAL", "READ", "*", "DENY"),
    "prefixed pattern": Acl("User:bank-banque-alpine", "TOPIC", "consents", "PREFIXED", "READ"),
    "an extra operation": Acl(
        "User:bank-banque-alpine", "TOPIC", "bank.banque-alpine.transactions.v1", "LITERAL", "READ"
    ),
    "a wildcard group of another principal": Acl("User:analytics", "GROUP", "*", "LITERAL", "READ"),
}


def test_every_drift_shape_is_read_and_marked_and_the_rest_is_not() -> None:
    """Each binding beyond the design on what it manages is drift, whatever its principal,
    host, pattern or permission; another team's binding on its own topic is not."""
    held = parse_listing(DRIFT_LISTING)
    assert set(DRIFT_SHAPES.values()) <= held
    cat = Catalog(Settings())
    banks = sorted(security.banks_in(held))
    assert banks == ["banque-alpine"]
    missing, extra = security.drift(WANT, held, cat, banks)
    assert set(extra) == set(DRIFT_SHAPES.values())
    assert Acl("User:analytics", "TOPIC", "someone.elses.topic", "LITERAL", "READ") not in extra
    assert Acl("User:passerelle", "TOPIC", "consents.v1", "LITERAL", "READ") not in missing


@pytest.mark.parametrize("shape", sorted(DRIFT_SHAPES))
def test_each_drift_is_removed_by_exactly_its_own_binding(shape: str) -> None:
    """The removal names the binding's principal, host, permission, operation and pattern
    (AclCommand removes nothing else)."""
    acl = DRIFT_SHAPES[shape]
    args = security.remove_command(acl)
    who = "allow" if acl.permission == "ALLOW" else "deny"
    assert args[:6] == ["--remove", "--force", f"--{who}-principal", acl.principal,
                        f"--{who}-host", acl.host]  # fmt: skip
    assert ["--operation", acl.operation, "--resource-pattern-type", acl.pattern] == args[6:10]
    assert args[-1] == acl.name


def test_a_mutant_that_skips_other_principals_misses_the_wildcard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drift check can fail: judged by principal alone (the old rule), the wildcard
    grant that let a bank read every consent is not found."""
    monkeypatch.setattr(security.Managed, "reaches", lambda self, acl: False)
    held = parse_listing(DRIFT_LISTING)
    _, extra = security.drift(WANT, held, Catalog(Settings()), ["banque-alpine"])
    assert DRIFT_SHAPES["wildcard principal"] not in extra
