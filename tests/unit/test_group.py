"""The stateful stage's group protocol (`core/group.py`): what members say when they
join, what the leader sends back, and what each member hands its standby."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocol

from streams.core import group
from streams.core.placement import Held


class Cluster:
    """The one thing an assignor asks of aiokafka's cluster metadata."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.count = topic, partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.count)) if topic == self.topic else None


class TestUserData:
    def test_what_a_member_holds_has_fixed_bytes(self) -> None:
        """The join metadata's user_data is small JSON, partitions sorted."""
        held = Held(frozenset({3, 1}), {5: 1024, 2: 0})
        assert group.encode_held(held) == b'{"v": 1, "owned": [1, 3], "warm": {"2": 0, "5": 1024}}'
        assert group.decode_held(group.encode_held(held)) == held

    def test_metadata_that_does_not_parse_holds_nothing(self) -> None:
        """A member speaking another dialect (or none) counts as holding nothing."""
        for raw in (b"", None, b"\xff", b"[]", b'{"owned": "x"}', b'{"v": 1, "owned": [1]}'):
            assert group.decode_held(raw) == Held()

    def test_standbys_round_trip(self) -> None:
        """The assignment's user_data names the partitions to follow."""
        assert group.encode_standby({7, 5}) == b'{"v": 1, "standby": [5, 7]}'
        assert group.decode_standby(group.encode_standby({7, 5})) == {5, 7}
        assert group.decode_standby(b"") == frozenset()


class TestStandbyAssignor:
    def test_the_leaders_assignment_reaches_each_member_through_the_wire_format(self) -> None:
        """Three members join (one owned partition 0 before), the leader assigns over
        Kafka's consumer protocol bytes, and each member's standby is told its share:
        every partition owned once, followed once elsewhere, partition 0 kept."""
        told: dict[str, tuple[frozenset[int], frozenset[int]]] = {}

        def member(name: str, held: Held) -> group.StandbyAssignor:
            return group.StandbyAssignor(
                1, lambda: held, lambda a, s: told.__setitem__(name, (a, s))
            )

        members = {
            "m-a": member("m-a", Held(frozenset({0}))),
            "m-b": member("m-b", Held()),
            "m-c": member("m-c", Held(warm={4: 12})),
        }
        joined = {
            name: ConsumerProtocol.METADATA.decode(
                ConsumerProtocol.METADATA.encode(a.metadata(["in"]))
            )
            for name, a in members.items()
        }
        assignments = members["m-b"].assign(Cluster("in", 6), joined)
        for name, assignment in assignments.items():
            wire = ConsumerProtocol.ASSIGNMENT.encode(assignment)
            members[name].on_assignment(ConsumerProtocol.ASSIGNMENT.decode(wire))
        owned = sorted(p for a, _ in told.values() for p in a)
        followed = sorted(p for _, s in told.values() for p in s)
        assert owned == followed == list(range(6))
        assert all(not (a & s) for a, s in told.values())
        assert 0 in told["m-a"][0] and 4 in told["m-c"][0]

    def test_a_stateless_stage_keeps_roundrobin_alone(self) -> None:
        """Without a standby to tell, the stage offers only aiokafka's roundrobin."""
        (only,) = group.assignors(1, Held, None)
        assert only.name == "roundrobin"  # type: ignore[attr-defined]  # aiokafka's class

    def test_a_stateful_stage_offers_ours_alone(self) -> None:
        """Only ours: aiokafka 0.14 sends a JoinGroup per assignor listed, and a member
        whose protocols change while it joins restarts the group's rebalance."""
        names = [a.name for a in group.assignors(1, Held, lambda a, s: None)]  # type: ignore[attr-defined]  # aiokafka's class
        assert names == ["passerelle-standby"]
