"""Reading a group's committed offset when the broker answers with a group-level error:
the OffsetFetch responses are aiokafka's own structs, the coordinator a stand-in."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.protocol.commit import OffsetFetchResponse_v3

from streams import kafka

TP = TopicPartition("bank.b.transactions.v1", 2)
LOADING = 14  # COORDINATOR_LOAD_IN_PROGRESS
NOT_COORDINATOR = 16


class Coordinator:
    """Answers each OffsetFetch with the next of `responses`, as a coordinator would."""

    group_id = "app-ingest"
    _retry_backoff_ms = 1

    def __init__(self, responses: list[Any]) -> None:
        self.responses, self.sent, self.dead = responses, 0, 0

    async def ensure_coordinator_known(self) -> None:
        return None

    async def _send_req(self, request: Any) -> Any:
        self.sent += 1
        return self.responses.pop(0)

    def coordinator_dead(self) -> None:
        self.dead += 1


class Consumer:
    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator


def group_error(code: int) -> Any:
    """What Kafka answers OffsetFetch v3 with on a group-level error: no partitions."""
    return OffsetFetchResponse_v3(0, [], code)


def offset(value: int, code: int = 0) -> Any:
    return OffsetFetchResponse_v3(0, [(TP.topic, [(TP.partition, value, "", code)])], 0)


async def test_a_group_level_error_is_retried_not_read_as_no_offset() -> None:
    """A coordinator that is loading, then has moved, answers with no partitions: the
    offset is asked again until it is known (aiokafka's own `committed()` says None)."""
    coordinator = Coordinator([group_error(LOADING), group_error(NOT_COORDINATOR), offset(4242)])
    assert await kafka.committed(Consumer(coordinator), TP) == 4242
    assert coordinator.sent == 3 and coordinator.dead == 1


async def test_a_partition_never_committed_is_none() -> None:
    """Offset -1 for the partition, or the partition absent: nothing was committed."""
    assert await kafka.committed(Consumer(Coordinator([offset(-1)])), TP) is None
    empty = OffsetFetchResponse_v3(0, [], 0)
    assert await kafka.committed(Consumer(Coordinator([empty])), TP) is None


async def test_a_partition_level_error_is_retried_too() -> None:
    """A retriable error on the partition itself is asked again."""
    coordinator = Coordinator([offset(-1, LOADING), offset(7)])
    assert await kafka.committed(Consumer(coordinator), TP) == 7


async def test_aiokafkas_own_reading_of_that_answer_finds_no_offset() -> None:
    """Why `kafka.committed` exists: aiokafka (pinned) reads the group-level error's
    answer as "nothing committed". If an upgrade fixes it, this fails: use theirs."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    coordinator = Coordinator([group_error(LOADING)])
    assert await GroupCoordinator._do_fetch_commit_offsets(coordinator, [TP]) == {}
