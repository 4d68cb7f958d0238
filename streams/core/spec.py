"""The handler contract: what a stage asks of the code it runs, and what it writes back.

Agents import this module, not the engine: a handler is a function from one
input record (and its partition's store) to the records it asks the stage to
write, and a `StageSpec` says what a stage reads and where its state goes.
The engine (`streams.core.stage`) runs specs; it knows nothing of banks or
consents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from streams.core.store import PartitionStore

__all__ = [
    "PROMPT_FETCH_WAIT_MS",
    "QUIET_FETCH_WAIT_MS",
    "RELAXED_FETCH_WAIT_MS",
    "Emit",
    "Handler",
    "OnError",
    "StageSpec",
]

# How long the broker may hold a stage's fetch that has nothing new. On the
# notification path (ingest, accounts) a caught-up stage must hear of a record at once;
# a stage whose readers are people or a bank's feed (conversation, outcomes) can wait
# longer, and polls ten times less when idle: a worker doing nothing spent 12-15 % of a
# core, half of its profile's samples in aiokafka's fetcher (docs/performance.md).
PROMPT_FETCH_WAIT_MS = 10
RELAXED_FETCH_WAIT_MS = 100
# How long the broker may hold a stage's fetch that names every partition the stage
# reads from it (`kafka.fetch_wait`): such a fetch returns with the first record any of
# them gets, so this bounds only how often a caught-up stage asks for nothing.
QUIET_FETCH_WAIT_MS = 500


@dataclass(frozen=True)
class Emit:
    """One record a handler asks the stage to write."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None
    optional: bool = False
    """Left out (and counted) when its topic does not exist, or may not be written,
    instead of failing the batch: for a derived copy (a bank's outcome feed) that
    must not hold back what else the stage writes."""


Handler = Callable[[ConsumerRecord[bytes, bytes], PartitionStore], Sequence[Emit]]
OnError = Callable[[ConsumerRecord[bytes, bytes], Exception, PartitionStore], Sequence[Emit]]


@dataclass(frozen=True)
class StageSpec:
    """What a stage reads, what it does with each record, and where its state goes."""

    name: str
    handler: Handler
    topics: tuple[str, ...] = ()
    pattern: str | None = None
    changelog: str | None = None
    """The changelog topic of a stateful stage (one input topic, co-partitioned)."""
    catch_up: tuple[str, ...] = ()
    """Input topics whose backlog, as found at assignment, is read before the
    stage's other partitions (paused meanwhile) and before it says it is ready:
    the consents, so no transaction overtakes a consent that was waiting."""
    purge: bool = False
    """The input is one of our own streams: records the stage committed are deleted from
    it (`streams.core.purge`), so the clear copies it carries do not outlive their use."""
    on_error: OnError | None = None
    """What to write instead of a record whose handler raised (its dead letter; given
    the partition's store, as the handler is): the record's changes are undone and the
    partition goes on, like Kafka Streams'
    processing-exception handler. None: the stage stops (StageFailed)."""
    fetch_wait_ms: int = PROMPT_FETCH_WAIT_MS
    """How long the broker may hold the stage's fetch when nothing new is there: the
    most a caught-up stage adds to a record's way, and how often an idle one polls."""
