"""The record of processing (GDPR Art. 30), generated rather than written by hand.

What each topic is for and what of a person it may carry comes from three sources
that the code already obeys, so the record cannot drift from them:

- the topic catalog (`streams/catalog.py`): every topic, its key, its value's schemas,
  its retention or compaction bound;
- the schemas (`schemas/*.avsc`): every field says the category of what it carries
  (its `"data"` annotation, one of `CATEGORIES`);
- the ACLs' desired state (`streams/security.py`): who may read each topic.

What only people can say is declared here, next to it: each topic's purpose, what its
key carries, what the values of a topic that is not plain Avro carry, and who each
principal is. A topic, a schema field or a principal added without its entry fails
`tests/unit/test_privacy.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from streams import catalog, security
from streams.codec import EmbeddedRegistry

CATEGORIES: dict[str, str] = {
    "account-number": "a bank account number (IBAN), in clear",
    "account-masked": "the last four characters of an account number",
    "messenger-id": "the customer's page-scoped Messenger id (psid)",
    "pseudonym": "a keyed hash of an account (not reversible without the key)",
    "financial": "amounts, balances, currencies, merchants, categories, descriptions, dates",
    "message": "what the customer wrote, or what we wrote to them",
    "consent": "the consent's terms: status, permissions, validity, transaction range",
    "preference": "locale, time zone, quiet hours, alert thresholds, digest, display",
    "reference": "ids of transactions, consents, notifications and messages",
    "operational": "bank ids, timestamps, kinds, outcomes, reasons, offsets: nobody's data",
    "sealed": "an account's record encrypted with its data key: unreadable (shredded) once "
    "the account is erased",
}
"""The data categories a field may carry (a schema field's `"data"` annotation)."""

BANK = "<bank_id>"
"""How the record names a bank: it holds the same for every bank."""
_SAMPLE_BANK = "record-bank"  # stands for BANK while the record is built

PRINCIPALS: dict[str, str] = {
    security.PASSERELLE: "the Passerelle worker (this processor)",
    security.CONSENT_AUTHORITY: "the consent authority: the banks' consent service",
    security.MESSENGER: "the messaging team's delivery worker, which calls Meta's Send API",
    security.SRE: "Passerelle's site reliability engineers",
    f"bank-{BANK}": "the bank itself, for its own records only",
}
"""Who each principal of the ACLs is (the super users, `admin` and `kafka-broker`, may
read everything; what `admin` does is logged by the brokers, in `authorizer.log`)."""

PURPOSES: dict[str, str] = {
    f"bank.{BANK}.transactions.v1": "receive the bank's transaction events, to notify the "
    "customers who consented",
    f"bank.{BANK}.outcomes.v1": "tell the bank what became of each record it wrote",
    catalog.CONSENTS: "know each account's consent: the basis of every output and its limits",
    catalog.NOTIFICATIONS: "hand the notifications the consents allow to the delivery worker",
    catalog.DLQ: "keep the records that could not be processed, with why, for diagnosis",
    catalog.AUDIT: "prove what was decided for each transaction and that each erasure was "
    "done (accountability, Art. 5(2))",
    catalog.INBOUND: "read what the customer asks or chooses in the chat",
    catalog.REQUESTS: "pass a customer's STOP to the consent authority",
    catalog.FEEDBACK: "learn which recipients cannot be reached, to stop writing to them",
    "<app>.accounts": "put each account's events in one order for its consent gate",
    "<app>.accounts-changelog": "restore the accounts stage's state after a restart",
    "<app>.psids": "put each psid's questions and links to accounts in one order",
    "<app>.conversation-changelog": "restore the conversation stage's state after a restart",
}

KEY_DATA: dict[str, tuple[str, ...]] = {
    f"bank.{BANK}.transactions.v1": ("account-number",),
    f"bank.{BANK}.outcomes.v1": ("operational",),
    catalog.CONSENTS: ("account-number",),
    catalog.NOTIFICATIONS: ("messenger-id",),
    # the account's hash (a sealed letter), else the source record's key, which may be a
    # psid, or a bank's key that could not be an account number
    catalog.DLQ: ("pseudonym", "messenger-id", "account-number"),
    catalog.AUDIT: ("pseudonym",),
    catalog.INBOUND: ("messenger-id",),
    catalog.REQUESTS: ("account-number",),
    catalog.FEEDBACK: ("messenger-id",),
    "<app>.accounts": ("account-number",),
    "<app>.accounts-changelog": ("account-number", "messenger-id"),
    "<app>.psids": ("messenger-id",),
    "<app>.conversation-changelog": ("messenger-id",),
}
"""What each topic's key carries."""

_ACCOUNT_RECORDS = (
    *("account-number", "messenger-id", "financial", "consent", "preference"),
    *("reference", "operational"),
)  # an account's transactions and consents, as frames or as the state built from them
_PSID_LINKS = ("account-number", "reference", "operational")  # a psid's accounts and asks

VALUE_DATA: dict[str, tuple[str, ...]] = {
    catalog.DLQ: ("sealed",),  # an account's record, sealed; any other keeps no bytes
    "<app>.accounts": _ACCOUNT_RECORDS,
    "<app>.accounts-changelog": _ACCOUNT_RECORDS,
    "<app>.psids": _PSID_LINKS,
    "<app>.conversation-changelog": _PSID_LINKS,
}
"""What the values of a topic carry where they are not only its schemas' records: the
internal streams (frames, JSON requests, links) and the stores' changelogs (JSON)."""

DISCLOSED: dict[str, str] = {
    catalog.NOTIFICATIONS: "Meta Platforms Ireland (Messenger), through the delivery worker: "
    "the psid, the text and its quick replies",
}
"""Who receives a topic's data outside the deployment."""


@dataclass(frozen=True)
class Entry:
    """One topic in the record."""

    topic: str
    purpose: str
    key: tuple[str, ...]
    value: tuple[str, ...]
    recipients: tuple[str, ...]
    disclosed: str | None
    retention: str
    erasure: str


def leaf_fields(definition: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """Every field of a record schema that is not itself a record (or array of records),
    with its dotted path."""
    for field in definition["fields"]:
        where = f"{path}{field['name']}"
        nested = _records(field["type"])
        if not nested:
            yield where, field
        for record in nested:
            yield from leaf_fields(record, f"{where}.")


def _records(schema: Any) -> list[Mapping[str, Any]]:
    if isinstance(schema, list):
        return [r for branch in schema for r in _records(branch)]
    if isinstance(schema, dict) and schema.get("type") == "record":
        return [schema]
    if isinstance(schema, dict) and schema.get("type") == "array":
        return _records(schema["items"])
    return []


def field_categories(definition: Mapping[str, Any]) -> dict[str, str]:
    """Each leaf field's category; a field without a known one is refused."""
    found = {path: field.get("data") for path, field in leaf_fields(definition)}
    missing = sorted(p for p, c in found.items() if c not in CATEGORIES)
    if missing:
        raise ValueError(f"{definition['name']}: no known data category for {missing}")
    return {p: str(c) for p, c in found.items()}


def template(cat: catalog.Catalog, topic: catalog.Topic) -> str:
    """A topic's name as the record says it: any bank, any deployment (`<app>` for the
    deployment's own internal topics, named after its app id)."""
    if topic in cat.internal():
        return f"<app>{topic.name.removeprefix(cat.settings.app_id)}"
    return re.sub(r"^bank\.[^.]+\.", f"bank.{BANK}.", topic.name)  # any bank's own topic


def record(cat: catalog.Catalog, registry: EmbeddedRegistry) -> list[Entry]:
    """The record of processing of this deployment, one entry per topic."""
    acls = security.desired(cat, [_SAMPLE_BANK])
    entries = []
    for topic in cat.all([_SAMPLE_BANK]):
        name = template(cat, topic)
        if name in VALUE_DATA:
            value = set(VALUE_DATA[name])
        else:
            value = {
                c
                for subject in topic.value_subjects
                for version in registry.versions(subject)
                for c in field_categories(version.definition).values()
            }
        entries.append(
            Entry(
                topic=name,
                purpose=PURPOSES[name],
                key=KEY_DATA[name],
                value=tuple(c for c in CATEGORIES if c in value),
                recipients=readers(acls, topic.name),
                disclosed=DISCLOSED.get(name),
                retention=_retention(topic),
                erasure=_erasure(topic),
            )
        )
    return entries


def readers(acls: set[security.Acl], topic: str) -> tuple[str, ...]:
    """The principals the ACLs let read `topic`, as the record names them."""
    who = {
        a.principal.removeprefix("User:")
        for a in acls
        if a.resource == "TOPIC"
        and a.operation in ("READ", "ALL")
        and a.permission == "ALLOW"
        and (a.name == topic if a.pattern == security.LITERAL else topic.startswith(a.name))
    }
    return tuple(sorted(p.replace(_SAMPLE_BANK, BANK) for p in who))


def _hours(ms: int) -> str:
    days, rest = divmod(ms, 86_400_000)
    if ms < 3_600_000:
        return f"{ms / 60_000:g} min"
    if rest:
        return f"{ms / 3_600_000:g} h"
    return f"{days} day" if days == 1 else f"{days} days"


def _retention(topic: catalog.Topic) -> str:
    if topic.compacted:
        return "each key's newest record, until the key is erased"
    retention = _hours(int(topic.config["retention.ms"]))
    if topic.purged_ms is not None:
        return f"{_hours(topic.purged_ms)} once its stage has read it; unread, {retention}"
    return f"{retention}, then deleted"


def _erasure(topic: catalog.Topic) -> str:
    bound = _hours(topic.removal_bound_ms)
    if topic.shredded:
        return (
            "shredded: an account's records become unreadable when its erasure deletes its "
            f"data key; records stay until their retention ends ({bound})"
        )
    if topic.compacted:
        return f"a tombstone for the key; compaction removes the key's records within {bound}"
    if topic.purged_ms is not None:
        return f"purged: its stage deletes what it has read, {bound} after (DeleteRecords)"
    return f"none record by record: records stay until their retention ends ({bound})"


def lines(entries: list[Entry]) -> list[str]:
    """The record as Markdown: principals, categories, then one section per topic."""
    out = ["## Who may read (principals)", ""]
    out += [f"- `{p}`: {what}" for p, what in PRINCIPALS.items()]
    out += [
        f"- `{security.ADMIN}` and `{security.BROKER}`, the super users, may read every "
        f"topic; every operation of `{security.ADMIN}` is logged (`authorizer.log`)"
    ]
    out += ["", "## Data categories", ""]
    out += [f"- `{c}`: {what}" for c, what in CATEGORIES.items()]
    out += ["", "## Topics", ""]
    for e in entries:
        out += [
            f"### `{e.topic}`",
            "",
            f"- purpose: {e.purpose}",
            f"- key: {', '.join(e.key)}",
            f"- value: {', '.join(e.value)}",
            f"- read by: {', '.join(e.recipients)}",
        ]
        if e.disclosed:
            out.append(f"- disclosed to: {e.disclosed}")
        out += [f"- kept: {e.retention}", f"- erasure: {e.erasure}", ""]
    return out[:-1]
