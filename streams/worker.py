"""Assemble a worker: its stages, their ticker, metrics, and the App that runs them."""

from __future__ import annotations

from dataclasses import dataclass

from mode import ServiceT
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from streams.agents import ingest, outcomes
from streams.agents.accounts import Accounts
from streams.agents.conversation import Conversation
from streams.app import PasserelleApp, create_app
from streams.catalog import Catalog
from streams.codec import Codec, EmbeddedRegistry
from streams.core import rocks
from streams.core.service import StageService
from streams.core.stage import Stage
from streams.core.ticks import Ticker
from streams.crypto import keyring_of
from streams.devkit import standin_stage as standin
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.settings import Settings


def standin_app(settings: Settings, prefix: str, tick_interval_s: float) -> PasserelleApp:
    """The core's proof workload as a worker."""
    metrics = Metrics(worker_registry())
    topics = standin.StandinTopics(prefix)
    changelog = Catalog(settings).changelog("standin").name
    stage = Stage(standin.spec(topics, changelog), settings, metrics=metrics)
    ticker = ticker_of(stage, settings, tick_interval_s)
    registry = EmbeddedRegistry.load(settings.schemas_dir)  # served on the web port
    return create_app(settings, [StageService(stage, ticker)], metrics, registry)


@dataclass(frozen=True)
class Pipeline:
    """The pipeline's stages and the accounts stage's ticker, not yet running."""

    ingest: Stage
    accounts: Stage
    conversation: Stage
    outcomes: Stage | None
    """None when the settings turn the banks' feeds off (PASSERELLE_OUTCOME_FEEDS)."""
    ticker: Ticker | None


def pipeline(
    settings: Settings,
    metrics: Metrics,
    tick_interval_s: float = 1.0,
    registry: EmbeddedRegistry | None = None,
) -> Pipeline:
    """Ingest re-keys every bank's records into the account stream (and customers'
    messages into the psid stream); accounts gates them on consent and writes
    notifications and the audit trail; the conversation turns messages into
    requests to the accounts; outcomes tells each bank, on its own feed, what
    became of its records (from the audit trail and the DLQ)."""
    codec = Codec(registry or EmbeddedRegistry.load(settings.schemas_dir))
    cat = Catalog(settings)
    stream = cat.account_stream().name
    hasher = KeyedHasher(settings.hash_key, settings.hash_key_id)
    accounts = Accounts(codec, hasher, cat, metrics, keyring_of(settings))
    talk = Conversation(cat, metrics, accounts.records.message)
    psids = cat.psid_stream().name
    gate = Stage(accounts.spec(), settings, metrics=metrics)
    # The stores' memory is the process's, not a stage's: read when scraped.
    metrics.store_memory.labels("memtables").set_function(lambda: rocks.memory()[0])
    metrics.store_memory.labels("block_cache").set_function(lambda: rocks.memory()[1])
    return Pipeline(
        ingest=Stage(
            ingest.spec(codec, stream, metrics, psid_stream=psids), settings, metrics=metrics
        ),
        accounts=gate,
        conversation=Stage(talk.spec(), settings, metrics=metrics),
        outcomes=(
            Stage(outcomes.spec(codec), settings, metrics=metrics)
            if settings.outcome_feeds
            else None
        ),
        ticker=ticker_of(gate, settings, tick_interval_s),
    )


def ticker_of(stage: Stage, settings: Settings, interval_s: float) -> Ticker | None:
    """A ticker for a stateful stage's input (one topic), ticking the partitions the
    stage owns; none if ticks are off (an interval of 0)."""
    if interval_s <= 0:
        return None
    return Ticker(settings, stage.spec.topics[0], stage.ownership.numbers, interval_s)


def worker_registry() -> CollectorRegistry:
    """A worker's registry: its own metrics, and the process's (CPU, memory, open
    files: `process_*`) and the interpreter's (`python_gc_*`, `python_info`) that an
    SRE expects from any Python service."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def pipeline_app(settings: Settings, tick_interval_s: float = 1.0) -> PasserelleApp:
    """The pipeline's worker: its stages as services of the faust App. It refuses
    the public development hash key unless the settings allow it."""
    settings.require_hash_key()
    metrics = Metrics(worker_registry())
    registry = EmbeddedRegistry.load(settings.schemas_dir)  # the codec's, and served
    built = pipeline(settings, metrics, tick_interval_s, registry)
    services: list[ServiceT] = [
        StageService(built.ingest),
        StageService(built.accounts, built.ticker),
        StageService(built.conversation),
        *([StageService(built.outcomes)] if built.outcomes is not None else []),
    ]
    return create_app(settings, services, metrics, registry)
