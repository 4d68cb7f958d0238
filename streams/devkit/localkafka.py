"""A real Apache Kafka on this machine, from Maven Central jars, without Docker.

`deploy/kafka/pom.xml` names the Kafka version; its jars are copied once into
a per-user cache keyed by that version (a second run downloads nothing). A
cluster is one or three KRaft nodes, each running broker and controller in one
JVM, with its config, data, logs and pid file in its own run folder.

Processes are only ever stopped by the pid this module wrote, after checking
that the pid still runs *our* config (so a recycled pid is never signalled).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams import security
from streams.errors import LocalKafkaError
from streams.settings import LocalKafkaSettings, Settings
from streams.tools.kafkajars import LOG4J_CONFIG, Say, ensure_jars, kafka_version, require_java

HOST = "127.0.0.1"
# How far apart the nodes of the three-node cluster listen. Every port stays
# below Linux's ephemeral range (32768 and up), where any outgoing connection
# may hold a port at the moment a broker wants to bind it.
CLUSTER_PORT_STRIDE = 10
STOP_GRACE_S = 30


@dataclass(frozen=True)
class Node:
    """One KRaft node: broker and controller in one JVM."""

    node_id: int
    port: int
    controller_port: int
    dir: Path

    @property
    def config_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def tls_port(self) -> int:
        """The SASL_SSL listener of a secure node."""
        return self.port + 2

    @property
    def pid_path(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def log_path(self) -> Path:
        return self.dir / "logs" / "server.log"

    @property
    def console_path(self) -> Path:
        return self.dir / "kafka.out"

    def recorded_pid(self) -> int | None:
        """The pid written when this node was last started."""
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of this node's broker if it runs our config, else None: safe to signal."""
        pid = self.recorded_pid()
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.config_path).encode() in cmdline else None


@dataclass(frozen=True)
class Cluster:
    """A set of nodes sharing one cluster id and quorum, in one run folder."""

    name: str
    dir: Path
    nodes: tuple[Node, ...]
    heap: str
    ready_timeout_s: int
    users: tuple[str, ...] = ()
    """SCRAM-SHA-512 users created at format time; empty for a PLAINTEXT cluster."""

    @property
    def secure(self) -> bool:
        return bool(self.users)

    @property
    def listener(self) -> str:
        return "SASL_PLAINTEXT" if self.secure else "PLAINTEXT"

    @classmethod
    def single(cls, settings: LocalKafkaSettings) -> Cluster:
        run = settings.run_dir.resolve()
        node = Node(1, settings.port, settings.port + 1, run / "node-1")
        return cls("single", run, (node,), settings.heap, settings.ready_timeout_s)

    @classmethod
    def three(cls, settings: LocalKafkaSettings) -> Cluster:
        run = settings.cluster_run_dir.resolve()
        nodes = tuple(
            Node(n, port, port + 1, run / f"node-{n}")
            for n in (1, 2, 3)
            for port in [settings.cluster_port + CLUSTER_PORT_STRIDE * (n - 1)]
        )
        return cls("three-node", run, nodes, settings.heap, settings.ready_timeout_s)

    @classmethod
    def secured(cls, settings: LocalKafkaSettings) -> Cluster:
        """One node with SCRAM-SHA-512 for clients and brokers and ACLs enforced."""
        run = settings.secure_run_dir.resolve()
        node = Node(1, settings.secure_port, settings.secure_port + 1, run / "node-1")
        users = (
            security.ADMIN,
            *security.SERVICE_PRINCIPALS,
            *(security.bank_principal(b) for b in settings.secure_banks),
        )
        return cls("secure", run, (node,), settings.heap, settings.ready_timeout_s, users)

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The local CA's certificate: PASSERELLE_SSL_CAFILE for the SASL_SSL listener."""
        return self.tls_dir / "ca.crt"

    @property
    def tls_bootstrap(self) -> str:
        return ",".join(f"{HOST}:{n.tls_port}" for n in self.nodes)

    def password_file(self, user: str) -> Path:
        """Where a user's password is kept (mode 0600), for PASSERELLE_SASL_PASSWORD_FILE."""
        return self.dir / "users" / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def client_settings(self, user: str | None = None) -> Settings:
        """Settings that reach this cluster, as `user` on a secure one (admin by default)."""
        if not self.secure:
            return Settings(bootstrap_servers=self.bootstrap)
        user = user or security.ADMIN
        return Settings(
            bootstrap_servers=self.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=user,
            sasl_password=self.password(user),
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    @property
    def replication_factor(self) -> int:
        return min(3, len(self.nodes))

    @property
    def min_insync_replicas(self) -> int:
        return 2 if len(self.nodes) >= 3 else 1

    def properties(self, node: Node) -> dict[str, str]:
        """The broker configuration of one node."""
        voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes)
        rf, isr = str(self.replication_factor), str(self.min_insync_replicas)
        listener = self.listener
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join(
                [f"{listener}://{HOST}:{node.port}", f"CONTROLLER://{HOST}:{node.controller_port}"]
                + ([f"SASL_SSL://{HOST}:{node.tls_port}"] if self.secure else [])
            ),
            "advertised.listeners": ",".join(
                [f"{listener}://{HOST}:{node.port}"]
                + ([f"SASL_SSL://{HOST}:{node.tls_port}"] if self.secure else [])
            ),
            # Transaction markers go broker to broker, even to itself: never the controller port.
            "inter.broker.listener.name": listener,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"CONTROLLER:{listener},{listener}:{listener}"
            + (",SASL_SSL:SASL_SSL" if self.secure else ""),
            **(self._security_properties() if self.secure else {}),
            "log.dirs": str(node.dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        }

    def _security_properties(self) -> dict[str, str]:
        """SCRAM for clients and brokers, PLAIN on the controller listener (SCRAM's
        credentials live in the metadata log the controller serves), ACLs enforced."""
        admin = security.ADMIN
        password = self.password(admin)
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return {
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                f'{scram} required username="{admin}" password="{password}";'
            ),
            # The same users over TLS, with a certificate from the node's own local CA.
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                f'{scram} required username="{admin}" password="{password}";'
            ),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(self.tls_dir / "broker.pem"),
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                f'{plain} required username="{admin}" password="{password}" '
                f'user_{admin}="{password}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{admin}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def describe(self) -> str:
        return f"{self.name} Kafka {kafka_version()} at {self.bootstrap} ({self.dir})"


def up(cluster: Cluster, settings: LocalKafkaSettings, say: Say = print) -> None:
    """Start every node that is not running, then wait until the cluster answers.

    Harmless when already up; brings back a node that was killed.
    """
    libs = ensure_jars(settings, say)
    java = require_java()
    stopped = [n for n in cluster.nodes if n.pid() is None]
    if not stopped:
        say(f"already running: {cluster.describe()}")
        wait_ready(cluster)
        return
    for node in stopped:
        for port in (node.port, node.controller_port):
            if _port_in_use(port):
                raise LocalKafkaError(
                    f"port {port} is in use by another process, not by the broker in {node.dir}; "
                    "stop that process or choose other ports (PASSERELLE_KAFKA_PORT, "
                    "PASSERELLE_KAFKA_CLUSTER_PORT)"
                )
    cluster_id = _cluster_id(cluster)
    _ensure_passwords(cluster)
    if cluster.secure:
        _ensure_certificate(cluster)
    for node in stopped:
        _write_config(cluster, node)
    _format(
        [n for n in stopped if not (n.dir / "data" / "meta.properties").exists()],
        java,
        libs,
        cluster_id,
        cluster,
    )
    for node in stopped:
        _start(node, cluster, java, libs)
    say(f"starting {cluster.describe()}")
    wait_ready(cluster)
    say(f"ready: {cluster.describe()}")


def down(cluster: Cluster, say: Say = print) -> None:
    """Stop every running node by its own pid: SIGTERM, then SIGKILL after a grace period."""
    running = [(n, pid) for n in cluster.nodes if (pid := n.pid()) is not None]
    for _, pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for node, pid in running:
        while node.pid() == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        if node.pid() == pid:
            os.kill(pid, signal.SIGKILL)
            say(f"node {node.node_id} did not stop within {STOP_GRACE_S}s; killed")
        node.pid_path.unlink(missing_ok=True)
    say(
        f"stopped {len(running)} node(s) of {cluster.describe()}"
        if running
        else f"not running: {cluster.describe()}"
    )


def kill(node: Node, sig: signal.Signals = signal.SIGKILL) -> int:
    """Send `sig` to one node's broker (for fault tests); returns the pid signalled."""
    pid = node.pid()
    if pid is None:
        raise LocalKafkaError(f"node {node.node_id} is not running")
    os.kill(pid, sig)
    return pid


def wait_ready(cluster: Cluster) -> None:
    """Wait until every node's port is open and a metadata call sees every broker."""
    deadline = time.monotonic() + cluster.ready_timeout_s
    for node in cluster.nodes:
        while not _port_in_use(node.port):
            _check_alive(node)
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"node {node.node_id} did not open port {node.port} "
                    f"within {cluster.ready_timeout_s}s; see {node.log_path}"
                )
            time.sleep(0.25)
    while True:
        brokers = asyncio.run(_broker_count(cluster))
        if brokers == len(cluster.nodes):
            return
        for node in cluster.nodes:
            _check_alive(node)
        if time.monotonic() > deadline:
            raise LocalKafkaError(
                f"metadata shows {brokers} of {len(cluster.nodes)} brokers after "
                f"{cluster.ready_timeout_s}s; see the logs in {cluster.dir}"
            )
        time.sleep(0.5)


def log_tail(cluster: Cluster, lines: int = 40) -> str:
    parts = []
    for node in cluster.nodes:
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        tail = "\n".join(text.splitlines()[-lines:])
        parts.append(f"==> node {node.node_id}: {node.log_path} <==\n{tail}")
    return "\n".join(parts)


def status(cluster: Cluster) -> list[tuple[Node, int | None]]:
    return [(n, n.pid()) for n in cluster.nodes]


def _cluster_id(cluster: Cluster) -> str:
    path = cluster.dir / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    cluster.dir.mkdir(parents=True, exist_ok=True)
    # Kafka's own format: a random UUID, URL-safe base64 without padding.
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    path.write_text(cluster_id + "\n")
    return cluster_id


def _ensure_passwords(cluster: Cluster) -> None:
    """A random password per user of a secure cluster, kept readable by us only."""
    for user in cluster.users:
        path = cluster.password_file(user)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18) + "\n")


def _ensure_certificate(cluster: Cluster) -> None:
    """A local CA and a broker certificate for 127.0.0.1, made once with openssl."""
    if (cluster.tls_dir / "broker.pem").exists():
        return
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalKafkaError(
            "openssl is needed for the secure node's TLS: apt-get install openssl"
        )
    tls = cluster.tls_dir
    tls.mkdir(parents=True, exist_ok=True)
    tls.chmod(0o700)
    (tls / "san.ext").write_text(f"subjectAltName=IP:{HOST}\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "365", "-subj", "/CN=passerelle local CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
         "-subj", f"/CN={HOST}"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "broker.crt", "-days", "365", "-extfile", "san.ext"],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run([openssl, *step], cwd=tls, capture_output=True, text=True)
        if done.returncode != 0:
            raise LocalKafkaError(f"openssl {step[0]} failed: {done.stderr.strip()[-200:]}")
    broker = tls / "broker.pem"
    broker.touch(mode=0o600)
    broker.write_text((tls / "broker.key").read_text() + (tls / "broker.crt").read_text())


def _write_config(cluster: Cluster, node: Node) -> None:
    (node.dir / "logs").mkdir(parents=True, exist_ok=True)
    lines = [f"{k}={v}" for k, v in cluster.properties(node).items()]
    node.config_path.touch(mode=0o600)  # a secure node's config holds the admin password
    node.config_path.write_text(
        "# written by passerelle kafka up; edits are overwritten\n" + "\n".join(lines) + "\n"
    )


def _format(nodes: list[Node], java: str, libs: Path, cluster_id: str, cluster: Cluster) -> None:
    """Format the storage of new nodes, in parallel (each is a JVM start); a secure
    cluster's SCRAM users are written into the metadata log here, before any start."""
    scram = [
        arg
        for user in cluster.users
        for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={cluster.password(user)}]")
    ]
    running = [
        (
            node,
            subprocess.Popen(
                [
                    java,
                    "-Xmx256m",
                    f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                    f"-Dkafka.logs.dir={node.dir / 'logs'}",
                    "-cp",
                    f"{libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    # One argument: an id may start with "-" (base64url), which
                    # the tool would otherwise take for an option.
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(node.config_path),
                    *scram,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for node in nodes
    ]
    for node, process in running:
        out, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            raise LocalKafkaError(f"formatting node {node.node_id} failed: {out.strip()[-300:]}")


def _start(node: Node, cluster: Cluster, java: str, libs: Path) -> None:
    command = [
        java,
        f"-Xms{cluster.heap}",
        f"-Xmx{cluster.heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={node.dir / 'logs'}",
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(node.config_path),
    ]
    with node.console_path.open("ab") as console:
        process = subprocess.Popen(
            command,
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node.dir,
            start_new_session=True,
        )
    node.pid_path.write_text(f"{process.pid}\n")


def _check_alive(node: Node) -> None:
    """Raise, with the end of its console output, if the node's process has exited."""
    pid = node.recorded_pid()
    if pid is None or not _alive(pid):
        console = (
            node.console_path.read_text(errors="replace") if node.console_path.exists() else ""
        )
        tail = " | ".join(console.strip().splitlines()[-5:])
        raise LocalKafkaError(
            f"node {node.node_id} exited during start; see {node.log_path}: {tail}"
        )


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (our own child may linger as one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


async def _broker_count(cluster: Cluster) -> int:
    """How many brokers a metadata call sees (0 when the call fails)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.kafka import connection_options

    options = connection_options(cluster.client_settings())
    options["request_timeout_ms"] = 5000
    client = AIOKafkaAdminClient(**options)
    try:
        await client.start()
        described = await client.describe_cluster()
        return len(described["brokers"])
    except Exception:  # not ready yet: any failure means "ask again"
        return 0
    finally:
        await client.close()
