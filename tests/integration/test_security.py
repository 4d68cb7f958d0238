"""On the secure broker (SCRAM-SHA-512, StandardAuthorizer, no ACL means no access):
the design's ACLs, applied by `passerelle acls apply`, allow what each principal
needs and nothing else, and the pipeline runs end to end as `passerelle`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, for_code

from streams import catalog, kafka, model, security
from streams.catalog import Catalog
from streams.codec import Codec
from streams.devkit import localkafka
from streams.errors import MissingTopicError
from streams.kafka import read_all
from streams.redact import KeyedHasher
from streams.settings import DEV_HASH_KEY, Settings
from streams.tools import acls, consent, reconcile, topics
from tests import samples
from tests.conftest import SECURE_BANKS
from tests.integration.harness import Worker, send, until

ALPHA, BETA = SECURE_BANKS
OK = "ok"
APP_ID = "secure-app"
PARTITIONS = 4
NOTES = catalog.NOTIFICATIONS


def as_user(cluster: localkafka.Cluster, user: str) -> Settings:
    return dataclasses.replace(
        cluster.client_settings(user), app_id=APP_ID, request_timeout_ms=10_000
    )


@pytest.fixture(scope="module")
def provisioned(secure_broker: localkafka.Cluster) -> localkafka.Cluster:
    """The catalog's topics and the design's ACLs, applied as admin; twice, the second
    changing nothing."""
    admin = as_user(secure_broker, security.ADMIN)
    every = Catalog(admin).all(list(SECURE_BANKS))
    asyncio.run(topics.create(admin, every, say=lambda _: None))
    # A probe in every partition of the topics the matrix reads, so a read proves itself.
    internal = Catalog(admin).internal()
    asyncio.run(_probe_every_partition(admin, [t.name for t in every if t not in internal]))
    acls.apply(admin, SECURE_BANKS, say=lambda _: None)
    assert acls.apply(admin, SECURE_BANKS, say=lambda _: None).none
    return secure_broker


async def write(settings: Settings, topic: str) -> str:
    """Produce one record; "ok" or the error's class name."""
    producer = kafka.producer(settings)
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"probe", b"probe")
        return OK
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await producer.stop()


async def read(settings: Settings, topic: str, group: str | None = None) -> str:
    """Read a probe record of a topic (in a consumer group if given): "ok" once one
    arrives, else the broker's refusal. aiokafka only logs a topic its metadata may
    not show, so the metadata answer for this user comes first."""
    refused = await metadata_refusal(settings, topic)
    if refused:
        return refused
    consumer = kafka.consumer(settings, group_id=group, auto_offset_reset="earliest")
    try:
        await consumer.start()
        if group:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if await consumer.getmany(timeout_ms=1000):
                return OK
        return "no record read"
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await consumer.stop()


async def metadata_refusal(settings: Settings, topic: str) -> str | None:
    """The error the broker answers this user's metadata request for the topic with."""
    client = kafka.admin(settings)
    await client.start()
    try:
        (described,) = await client.describe_topics([topic])
    finally:
        await client.close()
    code = described["error_code"]
    return for_code(code).__name__ if code else None


async def _probe_every_partition(settings: Settings, names: list[str]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for name in names:
            for p in range(PARTITIONS):
                await producer.send_and_wait(name, b"probe", b"probe", partition=p)
    finally:
        await producer.stop()


DENIED_TOPIC = "TopicAuthorizationFailedError"
DENIED_GROUP = "GroupAuthorizationFailedError"
# A principal with no WRITE anywhere cannot start an idempotent producer (our
# client factory's only kind): InitProducerId needs IDEMPOTENT_WRITE on the cluster.
DENIED_PRODUCER = "ClusterAuthorizationFailedError"


@dataclasses.dataclass(frozen=True)
class Cell:
    who: str
    action: str  # read or write
    topic: str
    expected: str
    group: str | None = None

    def row(self, observed: str) -> str:
        action = f"{self.action} (group {self.group})" if self.group else self.action
        return f"| {self.who} | {action} | {self.topic} | {self.expected} | {observed} |"


def matrix() -> list[Cell]:
    alpha, beta = security.bank_principal(ALPHA), security.bank_principal(BETA)
    bank_a, bank_b = catalog.bank_topic_name(ALPHA), catalog.bank_topic_name(BETA)
    notes, consents, dlq, audit = (
        catalog.NOTIFICATIONS,
        catalog.CONSENTS,
        catalog.DLQ,
        catalog.AUDIT,
    )
    authority, messenger, sre = security.CONSENT_AUTHORITY, security.MESSENGER, security.SRE
    app = security.PASSERELLE
    feed_a, feed_b = catalog.outcomes_topic_name(ALPHA), catalog.outcomes_topic_name(BETA)
    group_a = security.bank_group_prefix(ALPHA) + "reconcile"
    return [
        Cell(alpha, "read", feed_a, OK),  # its own outcome feed, as reconcile --feed reads it
        Cell(alpha, "read", feed_a, OK, group_a),  # and in its own groups
        Cell(alpha, "read", feed_a, DENIED_GROUP, "another-group"),
        Cell(alpha, "read", feed_b, DENIED_TOPIC),  # never another bank's
        Cell(alpha, "write", feed_a, DENIED_TOPIC),
        Cell(beta, "read", feed_b, OK),
        Cell(beta, "read", feed_a, DENIED_TOPIC),
        Cell(beta, "read", feed_b, DENIED_GROUP, group_a),  # nor in another bank's groups
        Cell(messenger, "read", feed_a, DENIED_TOPIC),
        Cell(sre, "read", feed_a, DENIED_TOPIC),
        Cell(app, "write", feed_a, OK),
        Cell(app, "read", feed_a, OK),  # its READ on `bank.` covers what it wrote
        Cell(alpha, "write", bank_a, OK),
        Cell(alpha, "write", bank_b, DENIED_TOPIC),
        Cell(beta, "write", bank_b, OK),
        Cell(beta, "write", bank_a, DENIED_TOPIC),
        Cell(alpha, "read", bank_a, DENIED_TOPIC),
        Cell(alpha, "read", consents, DENIED_TOPIC),
        Cell(alpha, "write", consents, DENIED_TOPIC),
        Cell(alpha, "read", notes, DENIED_TOPIC),
        Cell(alpha, "read", dlq, DENIED_TOPIC),
        Cell(alpha, "read", audit, DENIED_TOPIC),
        Cell(authority, "write", consents, OK),
        Cell(authority, "read", consents, OK),  # its own records (the consent tools)
        Cell(authority, "read", notes, DENIED_TOPIC),
        Cell(authority, "write", bank_a, DENIED_TOPIC),
        Cell(messenger, "read", notes, OK, "messenger-t"),
        Cell(messenger, "read", notes, DENIED_GROUP, "another-group"),
        Cell(messenger, "read", bank_a, DENIED_TOPIC),
        Cell(messenger, "read", consents, DENIED_TOPIC),
        Cell(messenger, "read", audit, DENIED_TOPIC),
        Cell(messenger, "write", notes, DENIED_TOPIC),  # it may write: its producer starts
        Cell(messenger, "write", catalog.INBOUND, OK),
        Cell(messenger, "write", catalog.REQUESTS, DENIED_TOPIC),
        Cell(authority, "read", catalog.REQUESTS, OK, "consent-authority-t"),
        Cell(authority, "read", catalog.INBOUND, DENIED_TOPIC),
        Cell(alpha, "read", catalog.REQUESTS, DENIED_TOPIC),
        Cell(sre, "read", dlq, OK),
        Cell(sre, "read", audit, OK),
        Cell(sre, "read", notes, DENIED_TOPIC),
        Cell(sre, "read", consents, DENIED_TOPIC),
        Cell(sre, "write", dlq, DENIED_PRODUCER),
        Cell(app, "read", consents, OK),
        Cell(app, "read", bank_a, OK),
        Cell(app, "read", bank_b, OK),
        Cell(app, "write", dlq, OK),  # its internal topics: the end-to-end test below
        Cell(app, "write", notes, OK),
        Cell(app, "write", bank_a, DENIED_TOPIC),
        Cell(app, "write", consents, DENIED_TOPIC),
        Cell(app, "read", notes, DENIED_TOPIC),
        Cell(app, "read", audit, OK),  # what the banks' feeds are made from, with the DLQ
        Cell(app, "read", dlq, OK),
    ]


async def test_each_principal_can_do_what_the_design_allows_and_nothing_else(
    provisioned: localkafka.Cluster,
) -> None:
    """Every cell is a real client call with the exact outcome expected; every
    principal succeeds at least once, so a broker that denies all fails this test."""
    cells = matrix()
    observed = []
    for cell in cells:
        settings = as_user(provisioned, cell.who)
        if cell.action == "write":
            observed.append(await write(settings, cell.topic))
        else:
            observed.append(await read(settings, cell.topic, cell.group))
    table = "\n".join(c.row(o) for c, o in zip(cells, observed, strict=True))
    print("\n| principal | action | topic | expected | observed |\n|---|---|---|---|---|\n" + table)
    assert observed == [c.expected for c in cells], table
    for who in {c.who for c in cells}:
        assert OK in (o for c, o in zip(cells, observed, strict=True) if c.who == who), who


async def test_the_consent_tools_work_as_the_consent_authority(
    provisioned: localkafka.Cluster, codec: Codec
) -> None:
    """grant, show, revoke and erase with the consent authority's own credentials (its
    ACLs, nothing more), as a bank's consent service would run them."""
    authority = as_user(provisioned, security.CONSENT_AUTHORITY)
    granted = consent.grant(
        ALPHA, "ACC-LP", "24871234567890123", "page-1", ["TRANSACTIONS"], "fr-FR",
        "Europe/Paris", 30, False, None, None,
    )  # fmt: skip
    await consent.write(authority, codec, granted)
    held = await consent.current(authority, codec, ALPHA, "ACC-LP")
    assert held is not None and held["consent_id"] == granted["consent_id"]
    await consent.write(authority, codec, consent.revoked(held))
    revoked = await consent.current(authority, codec, ALPHA, "ACC-LP")
    assert revoked is not None and revoked["status"] == "REVOKED_BY_PSU"
    await consent.erase(authority, ALPHA, "ACC-LP")
    assert await consent.current(authority, codec, ALPHA, "ACC-LP") is None


async def test_an_unauthenticated_client_and_a_wrong_password_are_refused(
    provisioned: localkafka.Cluster,
) -> None:
    """A client without SASL and one with a wrong password cannot even connect; the
    broker says why (its log names the failed SCRAM authentication)."""
    plain = Settings(bootstrap_servers=provisioned.bootstrap, request_timeout_ms=5_000)
    wrong = dataclasses.replace(as_user(provisioned, security.SRE), sasl_password="not-it")
    (node,) = provisioned.nodes

    def refusals() -> int:
        return node.log_path.read_text().count("invalid credentials with SASL mechanism SCRAM")

    before = refusals()
    assert await connect(plain) == "KafkaConnectionError"
    assert await connect(wrong) == "KafkaConnectionError"
    assert refusals() > before
    assert await connect(as_user(provisioned, security.SRE)) == OK  # the right password


async def test_the_operators_every_operation_is_in_the_authorizers_trail(
    provisioned: localkafka.Cluster,
) -> None:
    """The brokers talk as `kafka-broker`, not as the operator: the node's config names
    that identity and holds no operator password. The operator's ACL and topic changes,
    and every refusal, are in `authorizer.log`; other principals' allowed reads are not."""
    (node,) = provisioned.nodes
    config = node.config_path.read_text()
    assert f'username="{security.BROKER}"' in config
    assert provisioned.password(security.ADMIN) not in config
    admin = as_user(provisioned, security.ADMIN)
    acls.apply(admin, SECURE_BANKS, say=lambda _: None)  # as the operator: in the trail
    topic = f"trail-{uuid.uuid4().hex[:6]}"
    assert await write(as_user(provisioned, security.bank_principal(ALPHA)), topic) != OK
    assert await read(as_user(provisioned, security.SRE), catalog.DLQ) == OK
    trail = (node.log_path.parent / "authorizer.log").read_text().splitlines()
    operator = [line for line in trail if "Principal = User:admin is Allowed" in line]
    assert any("DescribeAcls" in line for line in operator), trail[-20:]
    refused = [line for line in trail if f"User:bank-{ALPHA} is Denied" in line]
    assert any(topic in line for line in refused), trail[-20:]
    assert not [line for line in trail if "Principal = User:sre is Allowed" in line]


async def connect(settings: Settings) -> str:
    """Open an admin connection: "ok" or the error's class name."""
    client = kafka.admin(settings)
    try:
        await client.start()
        await client.describe_cluster()
        return OK
    except KafkaError as exc:
        return type(exc).__name__
    finally:
        await client.close()


def secure_worker(
    cluster: localkafka.Cluster, app_id: str, tmp_path: Path, workers: list[Worker]
) -> Worker:
    """A pipeline worker started as `passerelle`, its password read from its file."""
    passerelle = as_user(cluster, security.PASSERELLE)
    worker = Worker(passerelle, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    worker.env.update(
        {
            "PASSERELLE_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PASSERELLE_SASL_USERNAME": security.PASSERELLE,
            "PASSERELLE_SASL_PASSWORD_FILE": str(cluster.password_file(security.PASSERELLE)),
        }
    )
    workers.append(worker)
    worker.start()
    return worker


async def test_the_pipeline_runs_as_passerelle_with_only_its_acls(
    provisioned: localkafka.Cluster, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    """Consents from the consent authority and transactions from a bank reach the
    messenger worker as notifications; a payload on bank alpha's topic that claims
    bank beta, or whose key is not its account, goes to the DLQ, never to a customer."""
    passerelle = as_user(provisioned, security.PASSERELLE)
    worker = secure_worker(provisioned, APP_ID, tmp_path, workers)

    run = uuid.uuid4().hex[:8]
    account = f"FR76{run.upper()}"
    now = int(time.time() * 1000)
    consent: model.Consent = {
        **samples.CONSENT,
        "bank_id": ALPHA,
        "account_id": account,
        "consent_id": f"cns-{run}",
        "psid": str(int(run, 16)),
        "updated_at": now - 60_000,
        "valid_until": now + 86_400_000,
    }
    authority = as_user(provisioned, security.CONSENT_AUTHORITY)
    await send(
        authority,
        catalog.CONSENTS,
        f"{ALPHA}:{account}".encode(),
        codec.encode(model.CONSENT, consent),
    )

    def tx(n: int, **changes: object) -> bytes:
        record = {
            **samples.TRANSACTION,
            "bank_id": ALPHA,
            "account_id": account,
            "transaction_id": f"tx-{run}-{n}",
            "pending_transaction_id": None,
            "amount_minor": -1_234,
            "booked_at": now,
            **changes,
        }
        return codec.encode(model.TRANSACTION, record)

    stream = Catalog(passerelle).account_stream().name
    await until(lambda: _in_stream(passerelle, stream, f"{ALPHA}:{account}"), worker)
    bank = as_user(provisioned, security.bank_principal(ALPHA))
    topic = catalog.bank_topic_name(ALPHA)
    await send(bank, topic, account.encode(), tx(1))
    await send(bank, topic, account.encode(), tx(2, bank_id=BETA))  # claims another bank
    await send(bank, topic, account.encode(), tx(3, account_id=f"OTHER{run}"))  # not its key

    messenger = as_user(provisioned, security.MESSENGER)
    sre = as_user(provisioned, security.SRE)

    async def notified() -> bool:
        found = await _read_all(messenger, NOTES, codec, model.NOTIFICATION, consent["psid"])
        return bool(found)

    sealed_for = KeyedHasher(DEV_HASH_KEY, "k0").account(ALPHA, account)  # the worker's key

    async def dead_lettered() -> bool:
        return len(await _dlq_reasons(sre, sealed_for)) >= 2

    await until(notified, worker, 120)
    await until(dead_lettered, worker, 60)
    notes = await _read_all(messenger, NOTES, codec, model.NOTIFICATION, consent["psid"])
    assert [n["kind"] for n in notes] == ["TRANSACTION"], notes
    assert sorted(await _dlq_reasons(sre, sealed_for)) == ["BANK_MISMATCH", "KEY_MISMATCH"]
    # The bank hears what became of every record of its topic from its own feed, with
    # its own credentials (the matrix's probes were dead-lettered too), and of no other.
    counts = await reconcile.wait_balanced(bank, codec, [ALPHA], 120, feed=True)
    assert worker.stop() == 0
    assert counts[ALPHA].balanced, counts[ALPHA].line(ALPHA)
    assert counts[ALPHA].forwarded == 1
    assert {"BANK_MISMATCH", "KEY_MISMATCH"} <= set(counts[ALPHA].dlq)
    with pytest.raises(MissingTopicError, match="may not read it"):
        await reconcile.reconcile(bank, codec, [BETA], feed=True)


async def test_a_worker_refused_by_the_acls_says_so_in_its_log_and_stops(
    provisioned: localkafka.Cluster, tmp_path: Path, workers: list[Worker]
) -> None:
    """Run as `passerelle` under an app id its ACLs do not cover (its groups and
    transactional ids are `secure-app-…`), the worker does not loop on retries: it logs
    `authorization_denied` naming the stage and the error, and stops non-zero."""
    worker = secure_worker(provisioned, "rogue-app", tmp_path, workers)
    deadline = time.monotonic() + 90
    while worker.alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert not worker.alive(), "the refused worker should stop, not retry for ever"
    assert worker.stop() != 0
    denied = [line for line in worker.log.read_text().splitlines() if "the broker refused" in line]
    assert denied, worker.log.read_text()[-2000:]
    assert any("GroupAuthorizationFailedError" in line for line in denied), denied


async def _read_all(
    settings: Settings, topic: str, codec: Codec, subject: str, key: str
) -> list[Any]:
    records = await read_all(settings, topic)
    return [codec.decode(subject, r.value) for r in records if r.key == key.encode()]


async def _dlq_reasons(settings: Settings, key: str) -> list[str]:
    return [
        dict(r.headers)["reason"].decode()
        for r in await read_all(settings, catalog.DLQ)
        if r.key == key.encode()
    ]


async def _in_stream(settings: Settings, stream: str, key: str) -> bool:
    return any(r.key == key.encode() for r in await read_all(settings, stream))


async def test_the_same_users_connect_over_tls_trusting_only_the_local_ca(
    provisioned: localkafka.Cluster,
) -> None:
    """SASL_SSL with the node's CA file works, with the same ACLs; a client that does
    not trust that CA (the system's CAs only) cannot connect."""
    bank = dataclasses.replace(
        as_user(provisioned, security.bank_principal(ALPHA)),
        bootstrap_servers=provisioned.tls_bootstrap,
        security_protocol="SASL_SSL",
        ssl_cafile=provisioned.ca_file,
    )
    assert await write(bank, catalog.bank_topic_name(ALPHA)) == OK
    assert await write(bank, catalog.bank_topic_name(BETA)) == DENIED_TOPIC
    untrusting = dataclasses.replace(bank, ssl_cafile=None)
    assert await connect(untrusting) == "KafkaConnectionError"


def _command_lines() -> list[str]:
    """Every process's command line, as `ps` shows it to any local user."""
    lines = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return lines


def test_no_password_is_ever_on_the_process_table(
    local_kafka_settings: Any, tmp_path: Path
) -> None:
    """The process table is sampled every 50 ms while a new secure node is formatted and
    started, and while `passerelle kafka tool` runs as admin: no user's password is in any
    command line (the format step reads its arguments from a 0600 file, the tools a
    client properties file)."""
    import shutil
    import threading

    settings = dataclasses.replace(
        local_kafka_settings,
        secure_port=9412,
        secure_run_dir=tmp_path / "secure",
        secure_banks=("argv-bank",),
    )
    cluster = localkafka.Cluster.secured(settings)
    seen: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.extend(_command_lines())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        localkafka.up(cluster, settings, say=lambda _: None)
        passwords = [cluster.password(user) for user in cluster.users]
        admin = cluster.client_settings(security.ADMIN)
        from streams.tools import kafkacli

        assert kafkacli.run_tool(admin, "acls", ["--list"]) == 0
    finally:
        done.set()
        sampler.join()
        localkafka.down(cluster, say=lambda _: None)
        shutil.rmtree(tmp_path / "secure", ignore_errors=True)
    formats = [line for line in seen if "StorageTool" in line or "format.args" in line]
    assert formats, "the sampler saw the format step"
    assert [line for line in seen if any(p in line for p in passwords)] == []
