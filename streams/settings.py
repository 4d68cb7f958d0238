"""Frozen settings, read once from the environment.

Every environment variable name Passerelle reads lives in this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from streams.errors import SettingsError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Guarantee = Literal["exactly_once", "at_least_once"]

_PROTOCOLS: tuple[SecurityProtocol, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_GUARANTEES: tuple[Guarantee, ...] = ("exactly_once", "at_least_once")
LogFormat = Literal["text", "json"]
_LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# A development key, public in this source: a worker refuses it unless
# PASSERELLE_ALLOW_DEV_HASH_KEY=on (make run, the tests and the bench set it).
DEV_HASH_KEY = "passerelle-dev-only-hash-key"

PREFIX = "PASSERELLE_"
# More standby copies than this buys nothing a deployment of a few workers can use.
MAX_STANDBY_REPLICAS = 8

_Choice = TypeVar("_Choice", bound=str)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of a local single broker."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    app_id: str = "passerelle"
    partitions: int = 4
    replication_factor: int = 1
    processing_guarantee: Guarantee = "exactly_once"
    hash_key: str = field(default=DEV_HASH_KEY, repr=False)
    hash_key_id: str = "k0"
    allow_dev_hash_key: bool = False
    """Let a worker start with the public development hash key and key-encryption key
    (never in production: anyone with the source could reverse the account hashes of
    the audit topic, and open the dead letters)."""
    kek_file: Path | None = None
    """The key-encryption keys (`streams.crypto`): `<kid> <base64 key>` a line."""
    data_dir: Path = Path(".run/worker")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    schemas_dir: Path | None = None
    request_timeout_ms: int = 30_000
    log_format: LogFormat = "text"
    standby_replicas: int = 1
    """Warm copies of each stateful partition, each on a worker other than its owner
    (`streams/core/placement.py`); 0 keeps none."""
    outcome_feeds: bool = True
    """Run the outcomes stage: each bank's feed of what became of its records."""
    purge_after_s: int = 600
    """How long after a stage commits a record of one of our own streams it is deleted."""
    max_batch: int = 2000
    """Input records per partition per batch (and transaction): large enough to
    amortise a commit (two round trips), small enough that a batch ends well
    inside the transaction timeout on a loaded two-core machine. Smaller batches
    commit more often: less latency and finer progress, fewer records a second."""

    @property
    def hash_key_is_default(self) -> bool:
        return self.hash_key == DEV_HASH_KEY

    def require_hash_key(self) -> None:
        """Refuse the public development hash key unless these settings allow it."""
        if self.hash_key_is_default and not self.allow_dev_hash_key:
            raise SettingsError(
                f"{PREFIX}HASH_KEY (or {PREFIX}HASH_KEY_FILE) is not set and the development "
                f"key is public: set a secret key, or {PREFIX}ALLOW_DEV_HASH_KEY=on on a laptop"
            )

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `PASSERELLE_*` variables; a bad value raises SettingsError."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            bootstrap_servers=reader.bootstrap("BOOTSTRAP", "KAFKA_PORT"),
            security_protocol=reader.choice("SECURITY_PROTOCOL", _PROTOCOLS, "PLAINTEXT"),
            sasl_mechanism=reader.text("SASL_MECHANISM", cls.sasl_mechanism),
            sasl_username=reader.optional("SASL_USERNAME"),
            sasl_password=reader.optional("SASL_PASSWORD")
            or reader.secret_file("SASL_PASSWORD_FILE"),
            ssl_cafile=reader.path("SSL_CAFILE"),
            app_id=reader.text("APP_ID", cls.app_id),
            partitions=reader.integer("PARTITIONS", cls.partitions, minimum=1),
            replication_factor=reader.integer("REPLICATION", cls.replication_factor, minimum=1),
            processing_guarantee=reader.choice("GUARANTEE", _GUARANTEES, "exactly_once"),
            hash_key=reader.secret_file("HASH_KEY_FILE") or reader.text("HASH_KEY", DEV_HASH_KEY),
            hash_key_id=reader.text("HASH_KEY_ID", cls.hash_key_id),
            allow_dev_hash_key=reader.choice("ALLOW_DEV_HASH_KEY", ("on", "off"), "off") == "on",
            kek_file=reader.path("KEK_FILE"),
            data_dir=reader.path("DATA_DIR") or cls.data_dir,
            web_port=reader.integer("WEB_PORT", cls.web_port, minimum=1, maximum=65535),
            web_host=reader.text("WEB_HOST", cls.web_host),
            schemas_dir=reader.path("SCHEMAS_DIR"),
            request_timeout_ms=reader.integer(
                "REQUEST_TIMEOUT_MS", cls.request_timeout_ms, minimum=1000
            ),
            log_format=reader.choice("LOG_FORMAT", _LOG_FORMATS, "text"),
            standby_replicas=reader.integer(
                "STANDBY_REPLICAS", cls.standby_replicas, minimum=0, maximum=MAX_STANDBY_REPLICAS
            ),
            outcome_feeds=reader.choice("OUTCOME_FEEDS", ("on", "off"), "on") == "on",
            max_batch=reader.integer("MAX_BATCH", cls.max_batch, minimum=1, maximum=100_000),
            purge_after_s=reader.integer("PURGE_AFTER_S", cls.purge_after_s, minimum=0),
        )
        if settings.uses_sasl and not (settings.sasl_username and settings.sasl_password):
            raise SettingsError(
                f"{PREFIX}SECURITY_PROTOCOL={settings.security_protocol} needs "
                f"{PREFIX}SASL_USERNAME and {PREFIX}SASL_PASSWORD"
            )
        return settings


class _Reader:
    """Reads and checks one kind of value per method; errors name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional(self, name: str) -> str | None:
        value = self._env.get(PREFIX + name, "").strip()
        return value or None

    def bootstrap(self, name: str, local_port: str) -> str:
        """`host:port[,host:port…]`; unset, the project's local broker, on the port it is
        told to use (so moving the local broker moves its clients)."""
        raw = self.optional(name)
        if raw is None:
            local = self.integer(local_port, LocalKafkaSettings.port, minimum=1, maximum=65535)
            return f"127.0.0.1:{local}"
        wrong = bootstrap_fault(raw)
        if wrong:
            raise SettingsError(f"{PREFIX}{name} {wrong}")
        return raw

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def secret_file(self, name: str) -> str | None:
        """A secret read from the file a variable names (a mounted Secret, say)."""
        path = self.path(name)
        if path is None:
            return None
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise SettingsError(f"{PREFIX}{name}: cannot read {path}: {exc.strerror}") from exc

    def path(self, name: str) -> Path | None:
        value = self.optional(name)
        return Path(value) if value else None

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be a whole number, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(f"{PREFIX}{name} must be {bound}, got {value}")
        return value

    def choice(self, name: str, allowed: tuple[_Choice, ...], default: _Choice) -> _Choice:
        raw = self.optional(name)
        if raw is None:
            return default
        for option in allowed:
            if raw == option:
                return option
        raise SettingsError(f"{PREFIX}{name} must be one of {', '.join(allowed)}, got {raw!r}")


def bootstrap_fault(raw: str) -> str | None:
    """What is wrong with a bootstrap list, or None."""
    for address in raw.split(","):
        host, sep, port = address.strip().rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            return f"must be host:port[,host:port...], got {raw!r}"
    return None


class _Asked(dict[str, str]):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.asked:
            self.asked.append(key)
        return default


def variables() -> list[str]:
    """Every `PASSERELLE_*` variable the settings read, once each, in the order read."""
    env = _Asked()
    Settings.from_env(env)
    LocalKafkaSettings.from_env(env)
    DeliverySettings.from_env(env)
    return [name for name in env.asked if name.startswith(PREFIX)]


@dataclass(frozen=True)
class LocalKafkaSettings:
    """Where and how the project's own local brokers run (`passerelle kafka …`)."""

    port: int = 9092
    run_dir: Path = Path(".run/kafka")
    cluster_port: int = 19092
    """The three-node cluster's first port; node N listens on this + 10 × (N - 1)."""
    cluster_run_dir: Path = Path(".run/kafka-cluster")
    secure_port: int = 9292
    """The secure single node (SCRAM-SHA-512, ACLs enforced)."""
    secure_run_dir: Path = Path(".run/kafka-secure")
    secure_banks: tuple[str, ...] = ("banque-alpine", "credit-breton", "thames-bank")
    """Banks whose `bank-<id>` users the secure node creates when it is formatted."""
    cache_dir: Path = Path.home() / ".cache" / "passerelle"
    heap: str = "512m"
    ready_timeout_s: int = 120

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalKafkaSettings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        xdg = env.get("XDG_CACHE_HOME")
        default_cache = Path(xdg) / "passerelle" if xdg else cls.cache_dir
        return cls(
            # Below the ephemeral range (32768+), so a client socket cannot take it.
            port=reader.integer("KAFKA_PORT", cls.port, minimum=1024, maximum=32766),
            run_dir=reader.path("KAFKA_DIR") or cls.run_dir,
            cluster_port=reader.integer(
                "KAFKA_CLUSTER_PORT", cls.cluster_port, minimum=1024, maximum=32746
            ),
            cluster_run_dir=reader.path("KAFKA_CLUSTER_DIR") or cls.cluster_run_dir,
            secure_port=reader.integer(
                "KAFKA_SECURE_PORT", cls.secure_port, minimum=1024, maximum=32766
            ),
            secure_run_dir=reader.path("KAFKA_SECURE_DIR") or cls.secure_run_dir,
            secure_banks=tuple(
                reader.text("KAFKA_SECURE_BANKS", " ".join(cls.secure_banks)).split()
            ),
            cache_dir=reader.path("CACHE_DIR") or default_cache,
            heap=reader.text("KAFKA_HEAP", cls.heap),
            ready_timeout_s=reader.integer("KAFKA_READY_TIMEOUT", cls.ready_timeout_s, minimum=5),
        )


@dataclass(frozen=True)
class DeliverySettings:
    """The reference delivery worker's (`passerelle deliver`); its Kafka connection is
    `Settings`' (as `messenger-worker` on a secured cluster)."""

    graph_url: str = "http://127.0.0.1:8089"
    """The Graph API's base URL (Meta's is https://graph.facebook.com)."""
    page_tokens_dir: Path = Path(".run/page-tokens")
    """One file per Page, named by its page_id, holding its access token (owner-only)."""
    state_dir: Path = Path(".run/deliver")
    """The worker's journal of what it sent (delivered ids, ended consents)."""
    web_port: int = 6068
    concurrency: int = 256
    """Send API calls in flight at once (one customer's messages stay in order)."""
    page_rate: int = 250
    """Calls a second per Page at most (Messenger allows about 300)."""
    timeout_ms: int = 10_000
    """How long one Send API call may take before it is retried."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeliverySettings:
        reader = _Reader(os.environ if environ is None else environ)
        url = reader.text("GRAPH_URL", cls.graph_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{PREFIX}GRAPH_URL must start with http:// or https://")
        return cls(
            graph_url=url,
            page_tokens_dir=reader.path("PAGE_TOKENS_DIR") or cls.page_tokens_dir,
            state_dir=reader.path("DELIVER_DIR") or cls.state_dir,
            web_port=reader.integer("DELIVER_PORT", cls.web_port, minimum=1, maximum=65535),
            concurrency=reader.integer(
                "DELIVER_CONCURRENCY", cls.concurrency, minimum=1, maximum=1000
            ),
            page_rate=reader.integer("PAGE_RATE", cls.page_rate, minimum=1),
            timeout_ms=reader.integer("SEND_TIMEOUT_MS", cls.timeout_ms, minimum=100),
        )
