"""`passerelle acls apply|show`: the design's ACLs and per-bank quotas, provisioned
idempotently with Kafka's own AclCommand and ConfigCommand.

`apply` lists what the brokers hold, adds only what is missing, sets each bank's
produce quota, and says what it changed; a second run changes nothing. What the
brokers hold beyond the design (`security.drift`: any binding of our principals,
and any binding on a resource we manage, whatever its principal, host, pattern
or permission) is reported, and removed only with `--prune`. `show` lists every
binding and marks the drift; `show --check` exits non-zero on any (for CI and a
cron job).

The banks are those named plus those whose principal already holds an ACL: a
run for one bank never takes another bank's access away.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from streams import security
from streams.catalog import Catalog
from streams.errors import PasserelleError
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
    have = listing(settings)
    everyone = sorted(set(banks) | security.banks_in(have))
    cat = Catalog(settings)
    want = security.desired(cat, everyone)
    missing, extra = security.drift(want, have, cat, everyone)
    changes = Changes(added=missing, unwanted=extra)
    commands = security.add_commands(changes.added)
    if prune and changes.unwanted:
        commands += [security.remove_command(acl) for acl in changes.unwanted]
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
    if changes.none and changes.unwanted:
        say(f"no change made: {len(changes.unwanted)} ACLs beyond the design (?) remain")
    elif changes.none:
        say(f"no change: {len(want)} ACLs and {len(banks)} bank quotas already in place")
    return changes


def show(
    settings: Settings, banks: Iterable[str] = (), check: bool = False, say: Say = print
) -> tuple[list[Acl], list[Acl]]:
    """Every binding the brokers hold, by principal, the drift marked (`!` beyond the
    design, `+` missing); with `check`, drift is a refusal (exit 1). Returns the drift."""
    held = listing(settings)
    everyone = sorted(set(banks) | security.banks_in(held))
    cat = Catalog(settings)
    missing, extra = security.drift(security.desired(cat, everyone), held, cat, everyone)
    for principal in sorted({a.principal for a in held} | {a.principal for a in missing}):
        say(principal)
        for acl in sorted(a for a in held if a.principal == principal):
            say(f"{'!' if acl in extra else ' '} {_entry(acl)}")
        for acl in (a for a in missing if a.principal == principal):
            say(f"+ {_entry(acl)}  (missing)")
    for user, rate in sorted(quotas(settings).items()):
        say(f"quota {user}: producer_byte_rate={rate}")
    drifted = f"{len(extra)} not in the design (!), {len(missing)} missing (+)"
    if not (extra or missing):
        say("no drift: the brokers hold exactly the design's ACLs on what it manages")
    elif check:
        raise PasserelleError(f"ACL drift: {drifted}; `passerelle acls apply --prune` converges")
    else:
        say(f"drift: {drifted}; `passerelle acls apply --prune` converges")
    return missing, extra


def _entry(acl: Acl) -> str:
    star = "*" if acl.pattern == security.PREFIXED else ""
    deny = "DENY " if acl.permission != "ALLOW" else ""
    host = f" from {acl.host}" if acl.host != "*" else ""
    return f"{deny}{acl.operation:<9} {acl.resource.lower():<16} {acl.name}{star}{host}"
