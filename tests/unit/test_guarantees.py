"""The two processing guarantees' steps, without a broker: a host that records what it
is asked (the stage's prepare, transaction, commit, re-open) and can hold or refuse it.
The broker-backed behaviour (fencing, restore, repeats) is in tests/integration."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from streams.core.batches import BatchWriter, Built, SendFailed
from streams.core.guarantees import AtLeastOnce, ExactlyOnce, Records
from streams.core.spec import Emit


@dataclass
class Record:
    offset: int


class Writer:
    """The outputs' writer: records each send, refuses those of `refuse`."""

    def __init__(self, events: list[str], name: str, refuse: bool = False) -> None:
        self.events, self.name, self.refuse = events, name, refuse

    async def send(self, records: Sequence[Emit], whole: Built = ()) -> dict[TopicPartition, int]:
        if self.refuse:
            raise SendFailed("refused by the test")
        self.events.append(f"send {self.name} {len(records)}")
        return {}


@dataclass
class Part:
    tp: TopicPartition
    writer: BatchWriter


@dataclass
class Host:
    stateful: bool = True
    events: list[str] = field(default_factory=list)
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    """A transaction of this partition waits for the event."""
    refuse: set[str] = field(default_factory=set)
    """Partitions whose next transaction (or offset commit) fails."""
    owned: set[str] = field(default_factory=set)

    def part(self, name: str, refuse_sends: bool = False) -> Part:
        self.owned.add(name)
        writer = cast(BatchWriter, Writer(self.events, name, refuse_sends))
        return Part(TopicPartition(name, 0), writer)

    async def prepare(self, part: Part, records: Records) -> tuple[Records, list[Emit], Built]:
        self.events.append(f"prepare {part.tp.topic} {records[0].offset}")
        emits = [Emit("out", None, b"v") for _ in records]
        return records, emits, [(part.tp, "changelog")]

    async def transaction(
        self, part: Part, records: Records, emits: Sequence[Emit], changelog: Built
    ) -> Exception | None:
        name = part.tp.topic
        self.events.append(f"begin {name} {records[0].offset} outputs={len(emits)}")
        if name in self.hold:
            await self.hold[name].wait()
        if name in self.refuse:
            self.refuse.discard(name)
            self.events.append(f"refused {name} {records[0].offset}")
            return SendFailed("refused by the test")
        self.events.append(f"committed {name} {records[0].offset}")
        return None

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        names = sorted(tp.topic for tp in offsets)
        if self.refuse.intersection(names):
            self.refuse.clear()
            raise CommitFailedError("refused by the test")
        self.events.append(f"commit offsets {' '.join(names)}")

    def done(self, part: Part, records: Records) -> None:
        self.events.append(f"done {part.tp.topic} {records[0].offset}")

    def aborted(self, part: Part, records: Records, error: Exception) -> None:
        self.events.append(f"aborted {part.tp.topic} {records[0].offset}")

    def owns(self, part: Part) -> bool:
        return part.tp.topic in self.owned

    async def reopen(self, part: Part) -> None:
        self.events.append(f"reopen {part.tp.topic}")

    async def release(self, part: Part) -> None:
        self.owned.discard(part.tp.topic)
        self.events.append(f"release {part.tp.topic}")


def batch(offset: int) -> Records:
    records: Records = [Record(offset), Record(offset + 1)]  # what the steps read: offsets
    return records


def at_least_once(host: Host) -> AtLeastOnce[Any]:
    return AtLeastOnce(host)


def exactly_once(host: Host) -> ExactlyOnce[Any]:
    return ExactlyOnce(host)


class TestExactlyOnce:
    async def test_a_batch_is_one_transaction_with_its_outputs(self) -> None:
        """Outputs, state and offsets go in the partition's one transaction; nothing is
        sent outside it."""
        host = Host()
        guarantee = exactly_once(host)
        a = host.part("a")
        await guarantee.round([(a, batch(0))])
        assert host.events == ["prepare a 0", "begin a 0 outputs=2", "committed a 0"]
        assert guarantee.producers(stateful=True) == guarantee.producers(stateful=False) == (True,)

    async def test_a_transaction_not_committed_reopens_its_partition_only(self) -> None:
        """A refused transaction is counted as aborted and its partition re-opened; the
        other partition of the round commits."""
        host = Host(refuse={"a"})
        guarantee = exactly_once(host)
        await guarantee.round([(host.part("a"), batch(0)), (host.part("b"), batch(5))])
        assert host.events.index("aborted a 0") < host.events.index("reopen a")
        assert "committed b 5" in host.events and "reopen b" not in host.events


class TestAtLeastOnce:
    async def test_outputs_go_ahead_and_state_follows_in_its_own_transaction(self) -> None:
        """A stateful stage's round sends its outputs outside any transaction, then its
        tail commits state and offsets (no outputs) in one transaction per partition."""
        host = Host()
        guarantee = at_least_once(host)
        await guarantee.round([(host.part("a"), batch(0))])
        await guarantee.drain()
        assert host.events == ["prepare a 0", "send a 2", "begin a 0 outputs=0", "committed a 0"]
        assert guarantee.producers(stateful=True) == (False, True)

    async def test_the_next_round_is_sent_while_the_tail_before_runs_and_tails_stay_in_order(
        self,
    ) -> None:
        """While round 1's tail is held, round 2's outputs are sent; round 2's tail
        begins only after round 1's committed."""
        host = Host(hold={"a": asyncio.Event()})
        guarantee = at_least_once(host)
        a = host.part("a")
        await guarantee.round([(a, batch(0))])
        second = asyncio.create_task(guarantee.round([(a, batch(2))]))
        while "send a 2" not in host.events:
            await asyncio.sleep(0)
        for _ in range(20):  # whatever would start now, starts
            await asyncio.sleep(0)
        assert "committed a 0" not in host.events
        assert "begin a 2 outputs=0" not in host.events and not second.done()
        host.hold["a"].set()
        await second
        await guarantee.drain()
        assert host.events.index("committed a 0") < host.events.index("begin a 2 outputs=0")

    async def test_a_failed_tail_breaks_its_partition_until_repaired(self) -> None:
        """A tail that fails leaves its partition broken: the next round's outputs are
        still sent, its tail leaves the partition out, and `repair` re-opens it."""
        host = Host(refuse={"a"})
        guarantee = at_least_once(host)
        a, b = host.part("a"), host.part("b")
        await guarantee.round([(a, batch(0)), (b, batch(0))])
        await guarantee.round([(a, batch(2)), (b, batch(2))])
        await guarantee.drain()
        assert "aborted a 0" in host.events and "send a 2" in host.events
        assert "begin a 2 outputs=0" not in host.events
        assert "committed b 2" in host.events
        await guarantee.repair()
        assert host.events[-1] == "reopen a"
        await guarantee.repair()  # once only
        assert host.events.count("reopen a") == 1

    async def test_a_broken_partition_being_revoked_is_released_not_reopened(self) -> None:
        """Under a revoke a broken partition is closed, not re-opened for a member that
        is about to lose it."""
        host = Host(refuse={"a"})
        guarantee = at_least_once(host)
        await guarantee.round([(host.part("a"), batch(0))])
        await guarantee.drain()
        await guarantee.repair(revoking=True)
        assert host.events[-1] == "release a" and "reopen a" not in host.events

    async def test_an_output_send_that_fails_reopens_the_partition_with_no_tail(self) -> None:
        """Outputs not acknowledged: the batch is aborted and its partition re-opened;
        nothing of it is committed."""
        host = Host()
        guarantee = at_least_once(host)
        await guarantee.round([(host.part("a", refuse_sends=True), batch(0))])
        await guarantee.drain()
        assert host.events == ["prepare a 0", "aborted a 0", "reopen a"]

    @pytest.mark.parametrize("refused", [False, True])
    async def test_a_stateless_round_commits_its_offsets_once_for_every_partition(
        self, refused: bool
    ) -> None:
        """Without state, a round's tail is one consumer commit for all its partitions;
        refused (the group moved on), it aborts every batch of the round."""
        host = Host(stateful=False, refuse={"a"} if refused else set())
        guarantee = at_least_once(host)
        await guarantee.round([(host.part("a"), batch(0)), (host.part("b"), batch(0))])
        await guarantee.drain()
        tail = host.events[4:]
        if refused:
            assert sorted(tail) == ["aborted a 0", "aborted b 0"]
        else:
            assert tail == ["commit offsets a b", "done a 0", "done b 0"]
        assert not any(e.startswith("begin") for e in host.events)
        assert guarantee.producers(stateful=False) == (False,)
