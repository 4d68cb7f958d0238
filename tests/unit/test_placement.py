"""Where a stateful stage's partitions live (`core/placement.py`): one owner each,
balanced; k standbys on other members; stickiness to owners and warm copies.

`violations` is the checker, written from the rules as docs/core.md states them and
not from the code; the mutants at the end show it can fail."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import hypothesis.strategies as st
import pytest
from hypothesis import find, given

from streams.core import placement
from streams.core.placement import Held, Placement, place

Place = Callable[[list[int], Mapping[str, Held], int], dict[str, Placement]]


def violations(
    partitions: list[int], members: Mapping[str, Held], k: int, placed: Mapping[str, Placement]
) -> list[str]:
    """What is wrong with a placement, in words; nothing if it keeps every rule."""
    found: list[str] = []
    if set(placed) != set(members):
        found.append("not every member has a share")
    owners = {p: [m for m, s in placed.items() if p in s.active] for p in partitions}
    found += [f"partition {p} has owners {o}" for p, o in owners.items() if len(o) != 1]
    loads = [len(s.active) for s in placed.values()]
    if loads and max(loads) - min(loads) > 1:
        found.append(f"owners unbalanced: {loads}")
    copies = min(k, len(members) - 1)
    for p in partitions:
        following = [m for m, s in placed.items() if p in s.standby]
        if len(following) != copies or len(set(following)) != len(following):
            found.append(f"partition {p} has standbys {following}, not {copies}")
        if owners[p] and owners[p][0] in following:
            found.append(f"partition {p} follows itself on {owners[p][0]}")
    cap = math.ceil(copies * len(partitions) / len(members)) if members else 0
    if any(len(s.standby) > cap for s in placed.values()):
        found.append(f"a member follows more than {cap}")
    return found


names = st.sets(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=6)


@st.composite
def groups(draw: st.DrawFn) -> tuple[list[int], dict[str, Held], int]:
    """A group as a leader may see it: any members, holding anything (even the same
    partition owned twice: a member that missed a rebalance)."""
    partitions = list(range(draw(st.integers(0, 12))))
    held = st.builds(
        Held,
        owned=st.frozensets(st.sampled_from(partitions)) if partitions else st.just(frozenset()),
        warm=st.dictionaries(st.sampled_from(partitions), st.integers(0, 100))
        if partitions
        else st.just({}),
    )
    members = {m: draw(held) for m in draw(names)}
    return partitions, members, draw(st.integers(0, 3))


class TestPlace:
    @given(groups())
    def test_every_placement_keeps_the_rules(
        self, group: tuple[list[int], dict[str, Held], int]
    ) -> None:
        """Whatever the members hold: one owner each, balanced, k standbys off the owner."""
        partitions, members, k = group
        assert violations(partitions, members, k, place(partitions, members, k)) == []

    @given(groups())
    def test_the_placement_is_a_function_of_the_group_alone(
        self, group: tuple[list[int], dict[str, Held], int]
    ) -> None:
        """The same group in another order gets the same placement (any leader agrees)."""
        partitions, members, k = group
        reordered = dict(reversed(list(members.items())))
        assert place(partitions[::-1], reordered, k) == place(partitions, members, k)

    @given(groups())
    def test_a_group_that_changes_nothing_moves_nothing(
        self, group: tuple[list[int], dict[str, Held], int]
    ) -> None:
        """A rebalance among the same members, each holding what it was placed, keeps
        every owner and every standby."""
        partitions, members, k = group
        first = place(partitions, members, k)
        again = {
            m: Held(frozenset(s.active), dict.fromkeys(s.standby, 7)) for m, s in first.items()
        }
        assert place(partitions, again, k) == first

    def test_a_member_leaving_hands_its_partitions_to_their_standbys(self) -> None:
        """When an owner leaves, each of its partitions goes to the member that followed it."""
        first = place(list(range(6)), dict.fromkeys("abc", Held()), 1)
        held = {
            m: Held(frozenset(s.active), dict.fromkeys(s.standby, 50))
            for m, s in first.items()
            if m != "a"
        }
        after = place(list(range(6)), held, 1)
        for p in first["a"].active:
            (follower,) = [m for m, s in first.items() if p in s.standby]
            assert p in after[follower].active
        for m in "bc":  # and what the others owned stays theirs
            assert set(first[m].active) <= set(after[m].active)

    def test_the_copy_read_furthest_is_preferred(self) -> None:
        """Of two members warm for a partition nobody owns, the one further along takes it."""
        members = {"a": Held(warm={0: 10}), "b": Held(warm={0: 90})}
        assert place([0], members, 0)["b"].active == (0,)

    def test_a_restarted_member_keeps_the_standbys_it_had(self) -> None:
        """Standby copies stay where they are warm when owners do not change."""
        members = {
            "a": Held(frozenset({0}), {1: 5}),
            "b": Held(frozenset({1}), {}),
            "c": Held(warm={0: 5}),
        }
        placed = place([0, 1], members, 1)
        assert placed["c"].standby == (0,) and placed["a"].standby == (1,)

    @pytest.mark.parametrize("k", [0, 1, 2])
    def test_four_members_twelve_partitions(self, k: int) -> None:
        """Four workers, twelve partitions: three owned and 3k followed each."""
        placed = place(list(range(12)), dict.fromkeys("abcd", Held()), k)
        assert [len(s.active) for s in placed.values()] == [3] * 4
        assert [len(s.standby) for s in placed.values()] == [3 * k] * 4

    def test_one_member_follows_nothing(self) -> None:
        """Alone, a member owns everything and has nobody to keep copies for."""
        assert place([0, 1, 2], {"a": Held()}, 1) == {"a": Placement((0, 1, 2), ())}


class TestTheCheckerCanFail:
    """Each planted mutant of `place` is caught by `violations`, hypothesis finds how."""

    @staticmethod
    def caught(monkeypatch: pytest.MonkeyPatch, name: str, mutant: Callable[..., object]) -> str:
        monkeypatch.setattr(placement, name, mutant)

        def wrong(g: tuple[list[int], dict[str, Held], int]) -> bool:
            return bool(violations(*g, place(*g)))

        p, m, k = find(groups(), wrong)
        return "; ".join(violations(p, m, k, place(p, m, k)))

    def test_standbys_on_the_owner(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A placement that moves a partition's copy onto its owner is caught."""
        real = placement._standbys

        def on_owner(partitions, ids, members, owner, replicas):  # type: ignore[no-untyped-def]  # mirrors the real one
            followed = real(partitions, ids, members, owner, replicas)
            for m in ids:
                if followed[m]:
                    p = min(followed[m])
                    followed[m].remove(p)
                    followed[owner[p]].add(p)
                    break
            return followed

        assert "follows itself" in self.caught(monkeypatch, "_standbys", on_owner)

    def test_sticky_beyond_the_quota(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An owner kept by whoever held it, regardless of balance, is caught."""

        def greedy(partitions, ids, members):  # type: ignore[no-untyped-def]  # mirrors the real one
            return {p: next((m for m in ids if p in members[m].owned), ids[0]) for p in partitions}

        assert "unbalanced" in self.caught(monkeypatch, "_owners", greedy)

    def test_one_standby_too_few(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A placement that keeps k - 1 copies is caught."""
        real = placement._standbys

        def short(partitions, ids, members, owner, replicas):  # type: ignore[no-untyped-def]  # mirrors the real one
            return real(partitions, ids, members, owner, max(0, replicas - 1))

        assert "standbys" in self.caught(monkeypatch, "_standbys", short)
