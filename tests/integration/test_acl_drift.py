"""ACLs that converge, on the secure broker: every shape of drift an administrator can add
is shown, fails `acls show --check`, and is removed by `acls apply --prune`; a real client
proves the drift was real before, and gone after."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys

import pytest

from streams import catalog, security
from streams.catalog import Catalog
from streams.devkit import localkafka
from streams.errors import PasserelleError
from streams.security import Acl
from streams.settings import Settings
from streams.tools import acls, kafkacli, topics
from tests.conftest import SECURE_BANKS
from tests.integration.test_security import OK, read, write

ALPHA = SECURE_BANKS[0]
BANK = f"User:bank-{ALPHA}"
CONSENTS = catalog.CONSENTS
READ, PREFIXED = ["--operation", "READ"], ["--resource-pattern-type", "PREFIXED"]
READ_CONSENTS = [*READ, "--topic", CONSENTS]
# (what an administrator adds by hand, the binding it becomes)
DRIFTS = [
    (
        ["--allow-principal", "User:*", "--operation", "READ", "--topic", CONSENTS],
        Acl("User:*", "TOPIC", CONSENTS, "LITERAL", "READ"),
    ),
    (
        ["--allow-principal", BANK, "--allow-host", "127.0.0.1", *READ_CONSENTS],
        Acl(BANK, "TOPIC", CONSENTS, "LITERAL", "READ", "127.0.0.1"),
    ),
    (
        ["--allow-principal", BANK, *READ, "--topic", "consents", *PREFIXED],
        Acl(BANK, "TOPIC", "consents", "PREFIXED", "READ"),
    ),
    (
        ["--deny-principal", "User:sre", "--operation", "READ", "--topic", catalog.AUDIT],
        Acl("User:sre", "TOPIC", catalog.AUDIT, "LITERAL", "READ", "*", "DENY"),
    ),
    (
        ["--allow-principal", BANK, *READ, "--topic", catalog.bank_topic_name(ALPHA)],
        Acl(BANK, "TOPIC", catalog.bank_topic_name(ALPHA), "LITERAL", "READ"),
    ),
]


def as_user(cluster: localkafka.Cluster, user: str) -> Settings:
    return dataclasses.replace(cluster.client_settings(user), request_timeout_ms=10_000)


@pytest.mark.timeout(600)
def test_each_drift_shape_is_shown_checked_and_pruned(
    secure_broker: localkafka.Cluster,
) -> None:
    """A wildcard principal, a host-bound grant, a prefixed pattern, a DENY entry and an
    extra operation, each added by hand: `show` marks each, `show --check` refuses,
    `apply` (without --prune) says they remain, `apply --prune` removes exactly them and
    says so, and the bank that could read every consent through them no longer can."""
    admin = as_user(secure_broker, security.ADMIN)
    asyncio.run(topics.create(admin, Catalog(admin).all(list(SECURE_BANKS)), say=lambda _: None))
    acls.apply(admin, SECURE_BANKS, say=lambda _: None)
    for probed in (CONSENTS, catalog.AUDIT):  # something to read, so a read proves itself
        assert asyncio.run(write(admin, probed)) == OK
    for added, _ in DRIFTS:
        kafkacli.run(admin, kafkacli.ACL_COMMAND, "--add", "--force", *added)
    drifted = {acl for _, acl in DRIFTS}
    bank = as_user(secure_broker, f"bank-{ALPHA}")
    assert asyncio.run(read(bank, CONSENTS)) == OK  # the leak is real

    shown: list[str] = []
    _, extra = acls.show(admin, say=shown.append)
    assert set(extra) == drifted
    marked = [line for line in shown if line.startswith("!")]
    print("\n".join(["acls show, the drift marked:", *marked]))
    assert len(marked) == len(drifted), shown
    with pytest.raises(PasserelleError, match="ACL drift: 5 not in the design"):
        acls.show(admin, check=True, say=lambda _: None)
    cli = subprocess.run(
        [sys.executable, "-m", "streams", "acls", "show", "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(secure_broker)},
    )
    assert cli.returncode == 1 and "ACL drift" in cli.stderr, cli.stderr

    said: list[str] = []
    kept = acls.apply(admin, SECURE_BANKS, say=said.append)
    assert set(kept.unwanted) == drifted and not kept.removed
    assert any("beyond the design" in line for line in said), said

    said = []
    pruned = acls.apply(admin, SECURE_BANKS, prune=True, say=said.append)
    print("\n".join(["acls apply --prune:", *said]))
    assert set(pruned.removed) == drifted
    assert sorted(line for line in said if line.startswith("- ")) == sorted(
        f"- {acl}" for acl in drifted
    )
    missing, extra = acls.show(admin, check=True, say=lambda _: None)
    assert (missing, extra) == ([], [])
    assert asyncio.run(read(bank, CONSENTS)) == "TopicAuthorizationFailedError"
    sre = as_user(secure_broker, "sre")
    assert asyncio.run(read(sre, catalog.AUDIT, group="sre-drift")) == OK  # the DENY is gone


def _env(cluster: localkafka.Cluster) -> dict[str, str]:
    import os

    admin = cluster.client_settings(security.ADMIN)
    return {
        **os.environ,
        "PASSERELLE_BOOTSTRAP": admin.bootstrap_servers,
        "PASSERELLE_SECURITY_PROTOCOL": admin.security_protocol,
        "PASSERELLE_SASL_USERNAME": security.ADMIN,
        "PASSERELLE_SASL_PASSWORD_FILE": str(cluster.password_file(security.ADMIN)),
    }
