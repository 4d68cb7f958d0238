"""Provision the catalog's topics: idempotent, and loud about conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from streams import kafka
from streams.catalog import Topic
from streams.errors import KafkaUnavailableError, TopicConflictError, TopicProvisionError
from streams.settings import Settings

Say = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    topic: str
    action: str  # "created" or "exists"


# Kafka error codes this module reads from admin responses.
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_ALREADY_EXISTS = 36
# Right after a topic is created (or while a broker is busy) its metadata can
# answer LEADER_NOT_AVAILABLE and the like for a moment: ask again until then.
METADATA_SETTLE_S = 15.0


async def existing_partitions(
    settings: Settings, names: list[str], must_exist: frozenset[str] = frozenset()
) -> dict[str, int]:
    """Partition counts of those `names` that exist, once their metadata has settled.

    A topic just created can be unknown to a broker's metadata for a moment:
    `must_exist` names topics to wait for until they are visible.
    """
    client = kafka.admin(settings)
    deadline = asyncio.get_running_loop().time() + METADATA_SETTLE_S
    try:
        await client.start()
        while True:
            described = await client.describe_topics(names)
            unsettled = [
                t["topic"]
                for t in described
                if t["error_code"] != 0
                and (t["error_code"] != UNKNOWN_TOPIC_OR_PARTITION or t["topic"] in must_exist)
            ]
            if not unsettled:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaUnavailableError(
                    f"metadata of {', '.join(unsettled)} did not settle in {METADATA_SETTLE_S}s"
                )
            await asyncio.sleep(0.2)
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"could not reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        await client.close()
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def _conflicts(topics: list[Topic], existing: dict[str, int]) -> None:
    conflicts = [
        f"{t.name} has {existing[t.name]} partitions, the catalog wants {t.partitions}"
        for t in topics
        if t.name in existing and existing[t.name] != t.partitions
    ]
    if conflicts:
        raise TopicConflictError(
            "refusing to provision: "
            + "; ".join(conflicts)
            + " (changing a partition count re-keys every account; migrate to a new topic "
            "or set PASSERELLE_PARTITIONS to match)"
        )


async def create(settings: Settings, topics: list[Topic], say: Say = print) -> list[Outcome]:
    """Create every topic that does not exist; refuse one that exists with other partitions.

    Conflicts are checked before anything is created, so a refusal changes nothing.
    """
    existing = await existing_partitions(settings, [t.name for t in topics])
    _conflicts(topics, existing)
    missing = [t for t in topics if t.name not in existing]
    if missing:
        client = kafka.admin(settings)
        try:
            await client.start()
            response = await client.create_topics([_new_topic(t) for t in missing])
        except KafkaError as exc:
            raise KafkaUnavailableError(f"could not create topics: {exc}") from exc
        finally:
            await client.close()
        # aiokafka does not raise per-topic errors: read them from the response.
        errors = {name: (code, message) for name, code, message in response.topic_errors}
        refused = [
            f"{name}: {message or f'error code {code}'}"
            for name, (code, message) in errors.items()
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if refused:
            raise TopicProvisionError("the broker refused to create " + "; ".join(refused))
        # Return only once every topic is visible; one that another provisioner
        # created first (TOPIC_ALREADY_EXISTS) must have our shape too.
        names = [t.name for t in missing]
        _conflicts(missing, await existing_partitions(settings, names, frozenset(names)))
    outcomes = [Outcome(t.name, "exists" if t.name in existing else "created") for t in topics]
    for outcome in outcomes:
        say(f"{outcome.action:8} {outcome.topic}")
    return outcomes


def _new_topic(topic: Topic) -> NewTopic:
    return NewTopic(
        name=topic.name,
        num_partitions=topic.partitions,
        replication_factor=topic.replication_factor,
        topic_configs=dict(topic.config),
    )
