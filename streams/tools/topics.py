"""Provision the catalog's topics: idempotent, and loud about conflicts."""

from __future__ import annotations

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


async def existing_partitions(settings: Settings, names: list[str]) -> dict[str, int]:
    """Partition counts of those `names` that exist."""
    client = kafka.admin(settings)
    try:
        await client.start()
        described = await client.describe_topics(names)
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"could not reach Kafka at {settings.bootstrap_servers}: {exc}"
        ) from exc
    finally:
        await client.close()
    # error_code 0: the topic exists (3 is UNKNOWN_TOPIC_OR_PARTITION).
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def create(settings: Settings, topics: list[Topic], say: Say = print) -> list[Outcome]:
    """Create every topic that does not exist; refuse one that exists with other partitions.

    Conflicts are checked before anything is created, so a refusal changes nothing.
    """
    existing = await existing_partitions(settings, [t.name for t in topics])
    conflicts = [
        f"{t.name} has {existing[t.name]} partitions, the catalog wants {t.partitions}"
        for t in topics
        if t.name in existing and existing[t.name] != t.partitions
    ]
    if conflicts:
        raise TopicConflictError(
            "refusing to provision: " + "; ".join(conflicts)
            + " (changing a partition count re-keys every account; migrate to a new topic "
            "or set PASSERELLE_PARTITIONS to match)"
        )
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
        # 36 is TOPIC_ALREADY_EXISTS (another provisioner won the race): fine.
        refused = [
            f"{name}: {message or f'error code {code}'}"
            for name, code, message in response.topic_errors
            if code not in (0, 36)
        ]
        if refused:
            raise TopicProvisionError("the broker refused to create " + "; ".join(refused))
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
