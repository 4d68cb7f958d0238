"""Kafka's own command-line tools, run from the cached jars: aiokafka has no API for
ACLs, quotas or transactions, and an operator's procedures (docs/runbook.md) use the
tools every Kafka operator knows (`passerelle kafka tool NAME ...`).

The connection comes from `Settings`, written to a client properties file that
only we can read and that is deleted after the call, so no password is ever on
a command line or in a log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from streams.errors import PasserelleError
from streams.settings import LocalKafkaSettings, Settings
from streams.tools import kafkajars

ACL_COMMAND = "org.apache.kafka.tools.AclCommand"
CONFIG_COMMAND = "kafka.admin.ConfigCommand"
TRANSACTIONS_COMMAND = "org.apache.kafka.tools.TransactionsCommand"


TOOLS = {
    # name: (main class, the option that takes the client properties file)
    "console-consumer": ("org.apache.kafka.tools.consumer.ConsoleConsumer", "--consumer.config"),
    "console-producer": ("org.apache.kafka.tools.ConsoleProducer", "--producer.config"),
    "consumer-groups": (
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--command-config",
    ),
    "transactions": (TRANSACTIONS_COMMAND, "--command-config"),
    "configs": (CONFIG_COMMAND, "--command-config"),
    "topics": ("org.apache.kafka.tools.TopicCommand", "--command-config"),
    "get-offsets": ("org.apache.kafka.tools.GetOffsetShell", "--command-config"),
    "delete-records": ("org.apache.kafka.tools.DeleteRecordsCommand", "--command-config"),
    "acls": (ACL_COMMAND, "--command-config"),
}
"""What `passerelle kafka tool` runs: the tools the runbook's procedures use."""


class KafkaToolError(PasserelleError):
    """A Kafka tool exited with an error."""


def client_properties(settings: Settings) -> str:
    """The Java client configuration equivalent to our client factory's."""
    lines = [
        f"security.protocol={settings.security_protocol}",
        f"request.timeout.ms={settings.request_timeout_ms}",
    ]
    if settings.uses_sasl:
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if settings.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = _quoted(settings.sasl_username or "")
        password = _quoted(settings.sasl_password or "")
        lines += [
            f"sasl.mechanism={settings.sasl_mechanism}",
            f'sasl.jaas.config={module} required username="{user}" password="{password}";',
        ]
    if settings.uses_tls and settings.ssl_cafile:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_cafile}"]
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def run(settings: Settings, main_class: str, *args: str, timeout_s: float = 120) -> str:
    """Run one tool against the brokers of `settings`; its stdout, or KafkaToolError."""
    with _client_config(settings) as config:
        result = subprocess.run(
            _command(settings, main_class, "--command-config", config, args),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "KAFKA_HEAP_OPTS": ""},
            check=False,
        )
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        tool = main_class.rsplit(".", 1)[-1]
        raise KafkaToolError(f"{tool} failed (exit {result.returncode}): {' | '.join(lines[-3:])}")
    return result.stdout


def run_tool(settings: Settings, name: str, args: list[str]) -> int:
    """Run a tool of TOOLS in the foreground (its input and output are the caller's),
    connected as `settings` say; its exit code."""
    main_class, config_option = TOOLS[name]
    with _client_config(settings) as config:
        command = _command(settings, main_class, config_option, config, args)
        env = {**os.environ, "KAFKA_HEAP_OPTS": ""}
        return subprocess.run(command, env=env, check=False).returncode


@contextlib.contextmanager
def _client_config(settings: Settings) -> Iterator[Path]:
    """The client properties in a file only we can read, deleted after the call."""
    with tempfile.TemporaryDirectory(prefix="passerelle-kafka-cli-") as folder:
        config = Path(folder) / "client.properties"
        config.touch(mode=0o600)
        config.write_text(client_properties(settings))
        yield config


def _command(
    settings: Settings, main_class: str, config_option: str, config: Path, args: Sequence[str]
) -> list[str]:
    libs = kafkajars.ensure_jars(LocalKafkaSettings.from_env())
    return [
        kafkajars.require_java(),
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",  # short-lived: start fast rather than run fast
        f"-Dlog4j2.configurationFile={kafkajars.LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={config.parent}",  # the tool's own log, gone with the folder
        "-cp",
        f"{libs}/*",
        main_class,
        "--bootstrap-server",
        settings.bootstrap_servers,
        config_option,
        str(config),
        *args,
    ]
