"""`passerelle acls apply|show`: the design's ACLs and per-bank quotas, provisioned
idempotently with Kafka's own AclCommand and ConfigCommand.

`apply` lists what the brokers hold, adds only what is missing, sets each bank's
produce quota, and says what it changed; a second run changes nothing. ACLs of
our principals that the design does not want are reported, and removed only
with `--prune`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from streams import security
from streams.catalog import Catalog
from streams.security import Acl
from streams.settings import Settings
from streams.tools import kafkacli

Say = Callable[[str], None]
# AclCommand calls run side by side: each is a JVM start, mostly waiting.
PARALLEL_CALLS = 4


@dataclass
class Changes:
    added: list[Acl] = field(default_factory=list)
    removed: list[Acl] = field(default_factory=list)
    unwanted: list[Acl] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=dict)

    @property
    def none(self) -> bool:
        return not (self.added or self.removed or self.quotas)


def listing(settings: Settings) -> set[Acl]:
    return security.parse_listing(kafkacli.run(settings, kafkacli.ACL_COMMAND, "--list"))


def quotas(settings: Settings) -> dict[str, int]:
    """producer_byte_rate by user, as the brokers hold it."""
    out = kafkacli.run(settings, kafkacli.CONFIG_COMMAND, "--describe", "--entity-type", "users")
    found = {}
    for user, rate in re.findall(
        r"Quota configs for user-principal '([^']+)' are .*?producer_byte_rate=([\d.]+)", out
    ):
        found[user] = int(float(rate))
    return found


def apply(
    settings: Settings,
    banks: Iterable[str],
    quota: int = security.DEFAULT_BANK_QUOTA,
    prune: bool = False,
    say: Say = print,
) -> Changes:
    banks = sorted(set(banks))
    want = security.desired(Catalog(settings), banks)
    have = listing(settings)
    ours = {f"User:{p}" for p in security.SERVICE_PRINCIPALS} | {
        f"User:{security.bank_principal(b)}" for b in banks
    }
    changes = Changes(
        added=sorted(want - have),
        unwanted=sorted(a for a in have - want if a.principal in ours),
    )
    commands = security.add_commands(changes.added)
    if prune and changes.unwanted:
        commands += [
            ["--remove", "--force", *args[1:]] for args in security.add_commands(changes.unwanted)
        ]
        changes.removed, changes.unwanted = changes.unwanted, []
    with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
        list(pool.map(lambda args: kafkacli.run(settings, kafkacli.ACL_COMMAND, *args), commands))
    held = quotas(settings)
    for bank in banks:
        user = security.bank_principal(bank)
        if held.get(user) != quota:
            kafkacli.run(
                settings,
                kafkacli.CONFIG_COMMAND,
                "--alter",
                "--add-config",
                f"producer_byte_rate={quota}",
                "--entity-type",
                "users",
                "--entity-name",
                user,
            )
            changes.quotas[user] = quota
    for acl in changes.added:
        say(f"+ {acl}")
    for acl in changes.removed:
        say(f"- {acl}")
    for acl in changes.unwanted:
        say(f"? {acl} (not in the design; --prune removes it)")
    for user, rate in changes.quotas.items():
        say(f"~ {user}: producer_byte_rate={rate}")
    if changes.none:
        say(f"no change: {len(want)} ACLs and {len(banks)} bank quotas already in place")
    return changes


def show(settings: Settings, say: Say = print) -> None:
    held = listing(settings)
    for principal in sorted({a.principal for a in held}):
        say(principal)
        for acl in sorted(a for a in held if a.principal == principal):
            star = "*" if acl.pattern == security.PREFIXED else ""
            say(f"  {acl.operation:<9} {acl.resource.lower():<16} {acl.name}{star}")
    for user, rate in sorted(quotas(settings).items()):
        say(f"quota {user}: producer_byte_rate={rate}")
