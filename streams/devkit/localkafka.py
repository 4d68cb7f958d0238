"""A real Apache Kafka on this machine, from Maven Central jars, without Docker.

`deploy/kafka/pom.xml` names the Kafka version; its jars are copied once into
a per-user cache keyed by that version (a second run downloads nothing). What
a cluster is (nodes, ports, configuration) is `streams/devkit/cluster.py`;
this module formats, starts, waits for and stops one.

Processes are only ever stopped by the pid this module wrote, after checking
that the pid still runs *our* config (so a recycled pid is never signalled).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from streams import security
from streams.devkit.cluster import HOST, Cluster, Node, ensure_certificate, ensure_passwords
from streams.errors import LocalKafkaError
from streams.settings import LocalKafkaSettings
from streams.tools.kafkajars import LOG4J_CONFIG, Say, ensure_jars, require_java

__all__ = ["Cluster", "Node", "down", "kill", "log_tail", "status", "up", "wait_ready"]

STOP_GRACE_S = 30
OWNER_ONLY = 0o077
"""The umask of the brokers we start: the files they make are readable by us only."""


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
    ensure_passwords(cluster)
    if cluster.secure:
        ensure_certificate(cluster)
    for node in stopped:
        _write_config(cluster, node)
    fresh = [n for n in stopped if not (n.dir / "data" / "meta.properties").exists()]
    _check_users(cluster, [n for n in stopped if n not in fresh])
    _format(fresh, java, libs, cluster_id, cluster)
    for node in stopped:
        _start(node, cluster, java, libs)
    say(f"starting {cluster.describe()}")
    wait_ready(cluster)
    say(f"ready: {cluster.describe()}")


def fresh(cluster: Cluster) -> Cluster:
    """The cluster with nothing of earlier runs: its nodes stopped, its folder deleted."""
    if any(pid for _, pid in status(cluster)):
        down(cluster, say=lambda _: None)
    shutil.rmtree(cluster.dir, ignore_errors=True)
    return cluster


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


def _write_config(cluster: Cluster, node: Node) -> None:
    (node.dir / "logs").mkdir(parents=True, exist_ok=True)
    for folder in (cluster.dir, node.dir):  # ours: made here, so ours to close
        folder.chmod(0o700)
    lines = [f"{k}={v}" for k, v in cluster.properties(node).items()]
    node.config_path.touch(mode=0o600)  # a secure node's config holds the admin password
    node.config_path.write_text(
        "# written by passerelle kafka up; edits are overwritten\n" + "\n".join(lines) + "\n"
    )


def _format(nodes: list[Node], java: str, libs: Path, cluster_id: str, cluster: Cluster) -> None:
    """Format the storage of new nodes, in parallel (each is a JVM start); a secure
    cluster's SCRAM users are written into the metadata log here, before any start.

    The arguments go to the JVM in an argument file (`java @file`, mode 0600,
    deleted after): the users' passwords are never on the process table."""
    scram = [
        arg
        for user in cluster.users
        for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={cluster.password(user)}]")
    ]
    running = []
    for node in nodes:
        arguments = [
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
        ]
        argfile = node.dir / "format.args"
        argfile.unlink(missing_ok=True)
        argfile.touch(mode=0o600)
        argfile.write_text("\n".join(_argfile_quoted(a) for a in arguments) + "\n")
        process = subprocess.Popen(
            [java, f"@{argfile}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            umask=OWNER_ONLY,
        )
        running.append((node, process, argfile))
    for node, process, argfile in running:
        try:
            out, _ = process.communicate(timeout=120)
        finally:
            argfile.unlink(missing_ok=True)
        if process.returncode != 0:
            raise LocalKafkaError(f"formatting node {node.node_id} failed: {out.strip()[-300:]}")
        _users_path(node).write_text("".join(f"{user}\n" for user in cluster.users))


def _users_path(node: Node) -> Path:
    """The SCRAM users a node's metadata log was formatted with, one per line."""
    return node.dir / "users.formatted"


def _check_users(cluster: Cluster, formatted: list[Node]) -> None:
    """Refuse, in one line, a secure node formatted without the brokers' own identity
    (by a version that let the operator's account be the brokers'): it cannot start."""
    for node in formatted if cluster.secure else []:
        path = _users_path(node)
        users = path.read_text().split() if path.exists() else []
        if security.BROKER not in users:
            raise LocalKafkaError(
                f"the secure node in {node.dir} was formatted without the `{security.BROKER}` "
                f"identity: stop it, remove {cluster.dir} and start it again (its topics and "
                "ACLs are made again by `topics create` and `acls apply`)"
            )


def _argfile_quoted(argument: str) -> str:
    """One argument as a line of a java @argfile: quoted, its backslashes and quotes
    escaped (the launcher reads quotes and escapes)."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


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
            umask=OWNER_ONLY,  # its data, metadata and logs: readable by us only
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
