"""How a stage takes part in its consumer group: who owns and who follows what
(the assignor), and what the stage is told at a rebalance (the listener).

A stateless stage uses aiokafka's `roundrobin`. A stateful one brings its own
partition assignor, `passerelle-standby`, which speaks `core/placement.py`
through Kafka's group protocol:

- **joining**, each member says what it holds, in its metadata's `user_data`:
  the partitions it owned and the copies it keeps, with their changelog offsets;
- **the leader** (one member, chosen by the broker) runs `placement.place` over
  every member's metadata, and sends each member its partitions to own, and in
  its assignment's `user_data` the partitions it is to follow;
- **each member**, told its assignment (`on_assignment`, just before the
  rebalance listener's `on_partitions_assigned`), hands both sets to its
  standby (`core/standby.py`).

So the placement is decided once, by one member, and every member learns its
part; nothing is stored apart from the group's own state. k is the leader's
setting.

Ours is the only protocol a stateful stage offers. aiokafka 0.14 sends one
JoinGroup per assignor listed, the first with only the first protocol, so a
member offering two changes its metadata while it joins: the broker starts a
new rebalance each time ("Updating metadata for member … during
CompletingRebalance"), and three workers starting together never settled in
`tests/integration/test_standby.py` (aio-libs/aiokafka#1168, open). The price:
a worker of this version and one of a version before it cannot share a group
(the broker answers InconsistentGroupProtocol), so that upgrade stops the old
workers before the new ones start (docs/runbook.md, "Upgrades").

`user_data` is JSON: `{"v": 1, "owned": [3], "warm": {"5": 1024}}` when joining,
`{"v": 1, "standby": [5, 7]}` in an assignment. A member whose metadata does not
parse counts as holding nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from streams.core.placement import Held, place

log = logging.getLogger(__name__)

VERSION = 1


def encode_held(held: Held) -> bytes:
    warm = {str(p): offset for p, offset in sorted(held.warm.items())}
    return json.dumps({"v": VERSION, "owned": sorted(held.owned), "warm": warm}).encode()


def decode_held(raw: bytes | None) -> Held:
    """What a member says it holds; nothing, if it says it in a way we do not read."""
    try:
        data = json.loads(raw or b"")
        owned = frozenset(int(p) for p in data["owned"])
        warm = {int(p): int(offset) for p, offset in data["warm"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return Held()
    return Held(owned, warm)


def encode_standby(partitions: Iterable[int]) -> bytes:
    return json.dumps({"v": VERSION, "standby": sorted(partitions)}).encode()


def decode_standby(raw: bytes | None) -> frozenset[int]:
    try:
        return frozenset(int(p) for p in json.loads(raw or b"")["standby"])
    except (ValueError, TypeError, KeyError):
        return frozenset()


Placed = Callable[[frozenset[int], frozenset[int]], None]
"""Told this member's partitions to own and to follow, at each assignment."""


class StandbyAssignor:
    """An aiokafka partition assignor (it has the methods aiokafka calls on one) for a
    stage that reads one topic: owners and k standbys, by `placement.place`."""

    name = "passerelle-standby"
    version = VERSION

    def __init__(self, replicas: int, held: Callable[[], Held], placed: Placed) -> None:
        self.replicas = replicas
        self.held = held
        self.placed = placed

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(
            self.version, sorted(topics), encode_held(self.held())
        )

    def assign(
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for m in members.values() for t in m.subscription})
        assert len(topics) == 1, f"a stateful stage reads one topic, not {topics}"
        (topic,) = topics
        partitions = sorted(cluster.partitions_for_topic(topic) or ())
        held = {member: decode_held(m.user_data) for member, m in members.items()}
        placement = place(partitions, held, self.replicas)
        return {
            member: ConsumerProtocolMemberAssignment(
                self.version, [(topic, list(share.active))], encode_standby(share.standby)
            )
            for member, share in placement.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        active = frozenset(tp.partition for tp in assignment.partitions())
        self.placed(active, decode_standby(assignment.user_data))


def assignors(replicas: int, held: Callable[[], Held], placed: Placed | None) -> tuple[object, ...]:
    """The consumer's `partition_assignment_strategy`: ours where the stage keeps
    standbys (`placed`), else aiokafka's roundrobin; one only (the module docstring)."""
    if placed is None:
        return (RoundRobinPartitionAssignor,)
    return (StandbyAssignor(replicas, held, placed),)


class Rebalanced(Protocol):
    async def on_revoked(self, revoked: list[TopicPartition]) -> None: ...
    async def on_assigned(self, assigned: list[TopicPartition]) -> None: ...


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka's base is untyped
    """The consumer's rebalance callbacks, passed on to the stage."""

    def __init__(self, stage: Rebalanced) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage.on_assigned(assigned)
