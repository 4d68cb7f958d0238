"""Partition ownership through rebalances, without a broker: an injected consumer and
producers that record what they are asked. The broker-backed proof (fencing, repeats)
is in tests/integration/test_stage.py; these pin which path each rebalance takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.protocol.commit import OffsetFetchResponse_v3

from streams.core.guarantees import AtLeastOnce, ExactlyOnce, Guarantee
from streams.core.ownership import Ownership, Partition
from streams.core.spec import StageSpec
from streams.settings import Settings

A, B = TopicPartition("in", 0), TopicPartition("in", 1)


@dataclass
class Events:
    log: list[str] = field(default_factory=list)
    refuse_start: set[str] = field(default_factory=set)
    """Transactional ids whose producer fails to start (a broker refusing the init)."""


class Producer:
    def __init__(self, events: Events, transactional_id: str | None) -> None:
        self.events, self.name = events, transactional_id or "idempotent"
        self.stopped = False

    async def start(self) -> None:
        if self.name in self.events.refuse_start:
            raise ConnectionError("refused by the test")
        self.events.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.stopped = True
        self.events.log.append(f"stop {self.name}")


class Coordinator:
    """The group's coordinator: the committed offset of partition p is 100 + p."""

    group_id = "app-s"
    _retry_backoff_ms = 1

    async def ensure_coordinator_known(self) -> None:
        return None

    async def _send_req(self, request: Any) -> Any:
        [(topic, [partition])] = request._partitions
        return OffsetFetchResponse_v3(0, [(topic, [(partition, 100 + partition, "", 0)])], 0)


class Consumer:
    """Seeks are recorded; offsets are asked of the group's coordinator."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self._coordinator = Coordinator()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.events.log.append(f"seek {tp.partition} {offset}")

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)


def ownership(events: Events, guarantee: Guarantee[Partition]) -> Ownership:
    spec = StageSpec("s", lambda record, store: [], topics=("in",))  # stateless
    owner = Ownership(
        spec,
        Settings(),
        "app-s",
        guarantee,
        recovery=None,
        standby=None,
        new_producer=lambda tid: cast(AIOKafkaProducer, Producer(events, tid)),
    )
    owner.consumer = cast(AIOKafkaConsumer, Consumer(events))
    return owner


GUARANTEES: dict[str, Any] = {
    "exactly_once": lambda: ExactlyOnce(cast(Any, None)),
    "at_least_once": lambda: AtLeastOnce(cast(Any, None)),
}


@pytest.mark.parametrize(
    ("name", "producer"), [("exactly_once", "app-s-in-0"), ("at_least_once", "idempotent")]
)
async def test_a_new_partition_starts_its_producer_then_resumes_at_the_group_offset(
    name: str, producer: str
) -> None:
    """A partition new to this worker gets its producer (under exactly_once transactional
    with the partition's id, which fences its previous owner) before its input is sought
    to the group's committed offset (settled only once the old owner is fenced)."""
    events = Events()
    owner = ownership(events, GUARANTEES[name]())
    assert await owner.assign([A]) == (0, 1, 0)
    assert events.log == [f"start {producer}", "seek 0 100"]
    assert owner.partitions[A].next_offset == 100


async def test_under_exactly_once_a_kept_partition_resumes_at_its_own_position() -> None:
    """Given back by the next assignment, a partition keeps its producer and resumes where
    it was, without asking the group (whose offset may lag its last commit's markers)."""
    events = Events()
    owner = ownership(events, ExactlyOnce(cast(Any, None)))
    await owner.assign([A])
    owner.partitions[A].next_offset = 250  # it committed up to there
    events.log.clear()
    owner.revoke([A])
    assert owner.partitions == {} and A in owner.idle
    assert await owner.assign([A]) == (1, 0, 0)
    assert events.log == ["seek 0 250"]  # no new producer, no group offset


async def test_under_at_least_once_a_kept_partition_keeps_its_producers_and_asks_the_group() -> (
    None
):
    """Under at_least_once a kept partition keeps its producers but resumes at the group's
    committed offset, like any other (it commits before it writes state)."""
    events = Events()
    owner = ownership(events, AtLeastOnce(cast(Any, None)))
    await owner.assign([A])
    owner.partitions[A].next_offset = 250
    events.log.clear()
    owner.revoke([A])
    await owner.assign([A])
    assert events.log == ["seek 0 100"]


@pytest.mark.parametrize("name", GUARANTEES)
async def test_partitions_not_given_back_are_closed_and_new_ones_opened(name: str) -> None:
    """After revoking A and B, an assignment of B alone closes A (its producers stopped)
    and keeps B's producers: nothing is started."""
    events = Events()
    owner = ownership(events, GUARANTEES[name]())
    await owner.assign([A, B])
    a, b = owner.partitions[A], owner.partitions[B]
    events.log.clear()
    owner.revoke([A, B])
    assert await owner.assign([B]) == (1, 0, 1)
    assert all(cast(Producer, p).stopped for p in a.producers)
    assert not any(cast(Producer, p).stopped for p in b.producers)
    assert not any(e.startswith("start") for e in events.log)
    assert list(owner.partitions) == [B] and owner.partitions[B].producers == b.producers
    assert owner.idle == {}


async def test_a_partition_whose_producer_cannot_start_opens_nothing_and_leaks_nothing() -> None:
    """When one new partition's producer fails to start, the producers started for the
    others are stopped, nothing is owned, and a kept partition stays aside (to be closed
    by the next assignment or the stage's end)."""
    events = Events(refuse_start={"app-s-in-1"})
    owner = ownership(events, ExactlyOnce(cast(Any, None)))
    await owner.assign([A])
    owner.revoke([A])
    events.log.clear()
    with pytest.raises(ConnectionError):
        await owner.assign([A, TopicPartition("in", 1), TopicPartition("in", 2)])
    assert events.log.count("start app-s-in-2") == events.log.count("stop app-s-in-2") == 1
    assert owner.partitions == {} and list(owner.idle) == [A]
    await owner.close_all()
    assert events.log[-1] == "stop app-s-in-0"


async def test_re_opening_a_partition_replaces_its_producer_and_asks_the_group_again() -> None:
    """After an abort the partition is closed and opened the full way: a new producer
    (fencing the old one's transaction) and the group's committed offset."""
    events = Events()
    owner = ownership(events, ExactlyOnce(cast(Any, None)))
    await owner.assign([A])
    part = owner.partitions[A]
    part.next_offset = 250
    events.log.clear()
    await owner.reopen(part)
    assert events.log == ["stop app-s-in-0", "start app-s-in-0", "seek 0 100"]
    assert not owner.owns(part) and owner.partitions[A].next_offset == 100


class StatefulAtLeastOnce(AtLeastOnce[Partition]):
    """The producers a stateful stage asks for under at_least_once (outputs, state)."""

    def producers(self, stateful: bool) -> tuple[bool, ...]:
        return super().producers(stateful=True)


async def test_when_the_state_producer_cannot_start_the_output_producer_is_stopped() -> None:
    """Of a partition's two producers, one started and one refused: the started one is
    stopped, and the partition is not owned."""
    events = Events(refuse_start={"app-s-in-0"})
    owner = ownership(events, StatefulAtLeastOnce(cast(Any, None)))
    with pytest.raises(ConnectionError):
        await owner.assign([A])
    assert events.log == ["start idempotent", "stop idempotent"] and owner.partitions == {}
