"""Apache Kafka's jars and a Java to run them: what the operator tools and the local
broker both need. `deploy/kafka/pom.xml` names the Kafka version; its jars are copied
once from Maven Central into a per-user cache keyed by that version (a second run
downloads nothing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from streams.errors import LocalKafkaError
from streams.settings import LocalKafkaSettings

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"
# Pinned: 3.6.1 rather than what Maven 3.8's super-POM would pick (2.8).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies"

Say = Callable[[str], None]


def kafka_version() -> str:
    """The Kafka version pinned in deploy/kafka/pom.xml (its one source of truth)."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise LocalKafkaError(f"{POM} does not pin <kafka.version>")
    return match.group(1)


def jars_dir(settings: LocalKafkaSettings) -> Path:
    return settings.cache_dir / f"kafka-{kafka_version()}" / "libs"


def ensure_jars(settings: LocalKafkaSettings, say: Say = print) -> Path:
    """The folder of Kafka's jars, fetched from Maven Central on first use only."""
    target = jars_dir(settings)
    if (target / ".complete").exists():
        return target
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            "Maven (mvn) is not installed; it fetches Kafka's jars: apt-get install maven"
        )
    partial = target.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    say(f"fetching Apache Kafka {kafka_version()} jars from Maven Central into {target.parent}")
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
        DEPENDENCY_PLUGIN,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise LocalKafkaError(
            f"Maven could not fetch Kafka {kafka_version()} (exit {result.returncode}); "
            f"is Maven Central reachable? {tail}"
        )
    (partial / ".complete").write_text(kafka_version() + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError(
            "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise LocalKafkaError(
            f"Kafka 4 needs Java 17 or newer; `java -version` says: {out.strip()[:80]}"
        )
    return java
