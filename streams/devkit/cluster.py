"""What a local Kafka cluster is: its nodes, their ports and folders, their configuration.

One or three KRaft nodes, each running broker and controller in one JVM, with
its config, data, logs and pid file in its own run folder; a secure cluster
has SCRAM-SHA-512 users, a TLS listener and ACLs enforced. Starting and
stopping them is `localkafka`'s.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams import security
from streams.errors import LocalKafkaError
from streams.settings import LocalKafkaSettings, Settings
from streams.tools.kafkajars import kafka_version

HOST = "127.0.0.1"
# How far apart the nodes of the three-node cluster listen. Every port stays
# below Linux's ephemeral range (32768 and up), where any outgoing connection
# may hold a port at the moment a broker wants to bind it.
CLUSTER_PORT_STRIDE = 10


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
            security.BROKER,
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
        credentials live in the metadata log the controller serves), ACLs enforced.
        Brokers and controllers talk as `kafka-broker`; the operator's `admin` is
        another identity, whose every operation the authorizer's trail records."""
        broker = security.BROKER
        password = self.password(broker)
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return {
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                f'{scram} required username="{broker}" password="{password}";'
            ),
            # The same users over TLS, with a certificate from the node's own local CA.
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                f'{scram} required username="{broker}" password="{password}";'
            ),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(self.tls_dir / "broker.pem"),
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                f'{plain} required username="{broker}" password="{password}" '
                f'user_{broker}="{password}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{broker};User:{security.ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def describe(self) -> str:
        return f"{self.name} Kafka {kafka_version()} at {self.bootstrap} ({self.dir})"


# -- a secure cluster's credentials and certificate, made once -------------------


def ensure_passwords(cluster: Cluster) -> None:
    """A random password per user of a secure cluster, kept readable by us only."""
    for user in cluster.users:
        path = cluster.password_file(user)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18) + "\n")


def ensure_certificate(cluster: Cluster) -> None:
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
