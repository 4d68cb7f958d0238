"""Who may do what on the brokers: the design's principals and their ACLs.

Pure data and rules: `desired` says which ACLs a deployment needs, `parse_listing`
reads what Kafka's AclCommand lists (every binding: wildcard principals, hosts,
prefixes, DENY), `drift` compares the two over every resource the project
manages, and `add_commands` / `remove_command` say which AclCommand calls
converge them. `streams.tools.acls` runs them.

Least privilege, by principal (Kafka `User:<name>`):

- `bank-<id>`: write (and describe) its own ingest topic; read its own outcome
  feed (`bank.<id>.outcomes.v1`), in groups named `bank-<id>.…`; nothing else.
- `consent-authority`: write and read `consents.v1` (its own records: the
  consent tools read the current version before a revocation); read the
  customers' withdrawal requests (`consents.requests.v1`), in groups named
  `consent-authority-…`.
- `passerelle`: read every ingest topic, the consents, the inbound
  messages and the delivery reports; write the notifications, the audit trail, the DLQ,
  the withdrawal requests and each bank's outcome feed; read the audit trail and
  the DLQ (what the feeds are made from); read and write its own internal topics (the account
  and psid streams, the changelogs); its consumer groups and transactional
  ids, by the app id's prefix.
- `messenger-worker`: read the notifications, in groups named `messenger-…`;
  write what customers send (`messenger.inbound.v1`), what became of each
  notification (`messenger.feedback.v1`), and the dead letters of the delivery
  worker (`passerelle.dlq.v1`, write only: ids and reasons, no message).
- `sre`: read the DLQ and the audit trail, in groups named `sre-…`.

Two super users need no ACL: `kafka-broker`, the brokers' and controllers'
identity between themselves, and `admin`, the operator's, whose every
operation the authorizer writes to its trail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from streams import catalog

ADMIN = "admin"
"""The operator account: a super user, for provisioning (topics, ACLs, quotas) only.
Every operation it makes is in the authorizer's trail (docs/runbook.md)."""
BROKER = "kafka-broker"
"""The brokers' and controllers' own identity, between themselves: never an operator's."""
PASSERELLE = "passerelle"
CONSENT_AUTHORITY = "consent-authority"
MESSENGER = "messenger-worker"
SRE = "sre"
SERVICE_PRINCIPALS = (PASSERELLE, CONSENT_AUTHORITY, MESSENGER, SRE)
MESSENGER_GROUP_PREFIX = "messenger-"
CONSENT_AUTHORITY_GROUP_PREFIX = "consent-authority-"
SRE_GROUP_PREFIX = "sre-"
# Kafka's ingest topics all start so; each bank's own topic is granted literally.
INGEST_PREFIX = "bank."

# A bank may produce this many bytes per second before the broker throttles it,
# so one bank's burst cannot starve the others (design: Security).
DEFAULT_BANK_QUOTA = 1024 * 1024

LITERAL = "LITERAL"
PREFIXED = "PREFIXED"


def bank_principal(bank_id: str) -> str:
    catalog.bank_topic_name(bank_id)  # refuses an id that is not a valid topic part
    return f"bank-{bank_id}"


def bank_group_prefix(bank_id: str) -> str:
    """The consumer groups a bank may read its outcome feed in: `bank-<id>.…`. A dot,
    which no bank id holds: bank `credit`'s prefix must not cover `credit-breton`'s."""
    return f"{bank_principal(bank_id)}."


@dataclass(frozen=True, order=True)
class Acl:
    """One binding: principal may (ALLOW) or may not (DENY) do operation on the resource
    pattern, from host. The design's are all ALLOW from any host."""

    principal: str
    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE, ALL, ...
    host: str = "*"
    permission: str = "ALLOW"

    def __str__(self) -> str:
        star = "*" if self.pattern == PREFIXED else ""
        where = f" from {self.host}" if self.host != "*" else ""
        deny = " DENY" if self.permission != "ALLOW" else ""
        what = f"{self.operation} {self.resource.lower()} {self.name}{star}"
        return f"{self.principal}:{deny} {what}{where}"


def _grant(
    principal: str, resource: str, names: Iterable[str], pattern: str, operations: Iterable[str]
) -> set[Acl]:
    return {Acl(principal, resource, n, pattern, op) for n in names for op in operations}


def desired(cat: catalog.Catalog, banks: Iterable[str]) -> set[Acl]:
    """Every ACL the deployment needs for these banks (see the module docstring)."""
    app = cat.settings.app_id
    write, read = ("WRITE", "DESCRIBE"), ("READ", "DESCRIBE")
    acls: set[Acl] = set()
    feeds = []
    for bank in banks:
        who, feed = bank_principal(bank), catalog.outcomes_topic_name(bank)
        acls |= _grant(who, "TOPIC", [catalog.bank_topic_name(bank)], LITERAL, write)
        acls |= _grant(who, "TOPIC", [feed], LITERAL, read)
        acls |= _grant(who, "GROUP", [bank_group_prefix(bank)], PREFIXED, ["READ"])
        feeds.append(feed)
    acls |= _grant(CONSENT_AUTHORITY, "TOPIC", [catalog.CONSENTS], LITERAL, write)
    acls |= _grant(CONSENT_AUTHORITY, "TOPIC", [catalog.CONSENTS, catalog.REQUESTS], LITERAL, read)
    authority_groups = [CONSENT_AUTHORITY_GROUP_PREFIX]
    acls |= _grant(CONSENT_AUTHORITY, "GROUP", authority_groups, PREFIXED, ["READ"])
    acls |= _grant(PASSERELLE, "TOPIC", [INGEST_PREFIX], PREFIXED, read)
    inputs = [catalog.CONSENTS, catalog.INBOUND, catalog.FEEDBACK]
    acls |= _grant(PASSERELLE, "TOPIC", inputs, LITERAL, read)
    outputs = [catalog.NOTIFICATIONS, catalog.AUDIT, catalog.DLQ, catalog.REQUESTS, *feeds]
    acls |= _grant(PASSERELLE, "TOPIC", outputs, LITERAL, write)
    acls |= _grant(PASSERELLE, "TOPIC", [catalog.AUDIT, catalog.DLQ], LITERAL, read)  # the feeds'
    internal = [t.name for t in cat.internal()]
    acls |= _grant(PASSERELLE, "TOPIC", internal, LITERAL, ("READ", "WRITE", "DESCRIBE"))
    streams = [cat.account_stream().name, cat.psid_stream().name]  # purged once committed
    acls |= _grant(PASSERELLE, "TOPIC", streams, LITERAL, ["DELETE"])
    acls |= _grant(PASSERELLE, "GROUP", [f"{app}-"], PREFIXED, ["READ"])
    acls |= _grant(PASSERELLE, "TRANSACTIONAL_ID", [f"{app}-"], PREFIXED, write)
    acls |= _grant(MESSENGER, "TOPIC", [catalog.NOTIFICATIONS], LITERAL, read)
    messenger_outputs = [catalog.INBOUND, catalog.FEEDBACK, catalog.DLQ]
    acls |= _grant(MESSENGER, "TOPIC", messenger_outputs, LITERAL, write)
    acls |= _grant(MESSENGER, "GROUP", [MESSENGER_GROUP_PREFIX], PREFIXED, ["READ"])
    acls |= _grant(SRE, "TOPIC", [catalog.DLQ, catalog.AUDIT], LITERAL, read)
    acls |= _grant(SRE, "GROUP", [SRE_GROUP_PREFIX], PREFIXED, ["READ"])
    return {Acl(f"User:{a.principal}", a.resource, a.name, a.pattern, a.operation) for a in acls}


_RESOURCE_LINE = "Current ACLs for resource `ResourcePattern(resourceType="


def parse_listing(text: str) -> set[Acl]:
    """Every binding in `AclCommand --list` output: any principal (wildcards too), host,
    pattern and permission (DENY too)."""
    import re

    found: set[Acl] = set()
    resource: tuple[str, str, str] | None = None
    for line in text.splitlines():
        head = re.search(r"resourceType=(\w+), name=([^,]+), patternType=(\w+)\)", line)
        if line.startswith(_RESOURCE_LINE) and head:
            resource = (head.group(1), head.group(2), head.group(3))
            continue
        entry = re.search(
            r"\(principal=([^,]+), host=([^,]+), operation=(\w+), permissionType=(\w+)\)", line
        )
        if entry and resource is not None:
            principal, host, operation, permission = entry.groups()
            found.add(Acl(principal, *resource, operation, host, permission))
    return found


def banks_in(held: Iterable[Acl]) -> set[str]:
    """The banks whose principals (`User:bank-<id>`) hold an ACL."""
    prefix = "User:bank-"
    ids = {a.principal[len(prefix) :] for a in held if a.principal.startswith(prefix)}
    return {b for b in ids if catalog.is_bank_id(b)}


@dataclass(frozen=True)
class Managed:
    """What the project manages on the brokers: its topics (every ingest topic included),
    its consumer groups' and transactional ids' prefixes, and the cluster."""

    topics: frozenset[str]
    prefixes: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, cat: catalog.Catalog, banks: Iterable[str]) -> Managed:
        app, banks = f"{cat.settings.app_id}-", list(banks)
        groups: tuple[str, ...] = (app, MESSENGER_GROUP_PREFIX, CONSENT_AUTHORITY_GROUP_PREFIX)
        groups += (SRE_GROUP_PREFIX, *(bank_group_prefix(b) for b in banks))
        prefixes = {"TOPIC": (INGEST_PREFIX,), "GROUP": groups, "TRANSACTIONAL_ID": (app,)}
        return cls(frozenset(t.name for t in cat.all(banks)), prefixes)

    def reaches(self, acl: Acl) -> bool:
        """Whether the ACL's resource pattern reaches something managed: a wildcard or a
        prefix that covers one of them does."""
        if acl.resource == "CLUSTER":
            return True
        prefixes = self.prefixes.get(acl.resource, ())
        literal = self.topics if acl.resource == "TOPIC" else frozenset()
        if acl.name == "*":
            return bool(prefixes)
        if acl.pattern == LITERAL:
            return acl.name in literal or any(acl.name.startswith(p) for p in prefixes)
        return any(n.startswith(acl.name) for n in literal) or any(
            p.startswith(acl.name) or acl.name.startswith(p) for p in prefixes
        )


def drift(
    want: set[Acl], have: set[Acl], cat: catalog.Catalog, banks: Iterable[str]
) -> tuple[list[Acl], list[Acl]]:
    """What the brokers lack of the design, and what they hold beyond it: every binding
    of our principals, and every binding on a resource we manage, that the design does
    not want, whatever its principal, host, pattern or permission."""
    ours = {f"User:{p}" for p in SERVICE_PRINCIPALS} | {a.principal for a in want}
    managed = Managed.of(cat, banks)
    extra = [a for a in have - want if a.principal in ours or managed.reaches(a)]
    return sorted(want - have), sorted(extra)


def remove_command(acl: Acl) -> list[str]:
    """AclCommand arguments removing exactly this binding."""
    who = "allow" if acl.permission == "ALLOW" else "deny"
    args = ["--remove", "--force", f"--{who}-principal", acl.principal, f"--{who}-host", acl.host]
    args += ["--operation", acl.operation, "--resource-pattern-type", acl.pattern]
    if acl.resource == "CLUSTER":
        return [*args, "--cluster"]
    return [*args, _RESOURCE_OPTION[acl.resource], acl.name]


_RESOURCE_OPTION = {  # AclCommand's option naming each resource type
    "TOPIC": "--topic",
    "GROUP": "--group",
    "TRANSACTIONAL_ID": "--transactional-id",
}


def add_commands(missing: Iterable[Acl]) -> list[list[str]]:
    """AclCommand arguments adding `missing`, one call per principal, pattern and
    resource type with the same operations (AclCommand crosses them all)."""
    by_resource: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for acl in missing:
        by_resource[(acl.principal, acl.resource, acl.pattern, acl.name)].add(acl.operation)
    calls: dict[tuple[str, str, str, tuple[str, ...]], list[str]] = defaultdict(list)
    for (principal, resource, pattern, name), ops in by_resource.items():
        calls[(principal, resource, pattern, tuple(sorted(ops)))].append(name)
    commands = []
    for (principal, resource, pattern, operations), names in sorted(calls.items()):
        args = ["--add", "--allow-principal", principal, "--resource-pattern-type", pattern]
        for name in sorted(names):
            args += [_RESOURCE_OPTION[resource], name]
        for operation in operations:
            args += ["--operation", operation]
        commands.append(args)
    return commands
