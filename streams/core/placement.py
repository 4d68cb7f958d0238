"""Where a stateful stage's partitions live: one owner each, and k standby copies.

A pure function of the group as its leader sees it at a rebalance: the
partitions, and for each member what it holds (the partitions it owned, the
copies it keeps warm and how far each has read its changelog). Every member
of the group runs the same code, but only the leader calls `place`; its result
travels to each member in its assignment (`core/group.py`). This is Kafka
Streams' `num.standby.replicas`, simplified:

1. **Owners, balanced.** Each member owns ⌊P/N⌋ or ⌈P/N⌉ partitions. A
   partition stays with the member that owned it, if that member has room;
   else it goes to the member whose copy has read furthest; else to the least
   loaded member (members taken in the order of their ids, so ties are broken
   the same way on every run).
2. **Standbys, k of each partition** (fewer when the group has fewer than k + 1
   members), never on the owner, spread so that no member follows more than
   ⌈k·P/N⌉; within that, a member already warm for the partition (it owned or
   followed it) is preferred, the furthest read first. Where that greedy pass
   leaves a member over the bound, copies are moved off it (`_spread`).

A member keeps on disk only what it owns or follows (`core/standby.py`): with
k = 0, nothing it does not own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# What an owner's store counts as, against a copy's changelog offset: the most current.
OWNED = 2**63 - 1


@dataclass(frozen=True)
class Held:
    """What one member holds when the group rebalances."""

    owned: frozenset[int] = frozenset()
    """Partitions it owned until this rebalance (their stores are current)."""
    warm: Mapping[int, int] = field(default_factory=dict)
    """Partitions it keeps a copy of, with the changelog offset each has read to
    (0: a store on disk whose offset it has not read)."""

    def warmth(self, partition: int) -> int:
        """How far this member's store of the partition has read: -1 if it has none."""
        if partition in self.owned:
            return OWNED
        return self.warm.get(partition, -1)


@dataclass(frozen=True)
class Placement:
    """One member's share: the partitions it owns, and those it follows."""

    active: tuple[int, ...] = ()
    standby: tuple[int, ...] = ()


def place(
    partitions: Sequence[int], members: Mapping[str, Held], replicas: int
) -> dict[str, Placement]:
    """Each member's owners and standbys (the module docstring has the rules)."""
    ids, ordered = sorted(members), sorted(partitions)
    if not ids:
        return {}
    owner = _owners(ordered, ids, members)
    standbys = _standbys(ordered, ids, members, owner, replicas)
    return {
        m: Placement(
            active=tuple(p for p in ordered if owner[p] == m),
            standby=tuple(sorted(standbys[m])),
        )
        for m in ids
    }


def _owners(partitions: list[int], ids: list[str], members: Mapping[str, Held]) -> dict[int, str]:
    floor, extra = divmod(len(partitions), len(ids))
    load = dict.fromkeys(ids, 0)
    owner: dict[int, str] = {}

    def room(m: str) -> bool:
        return load[m] < floor or (load[m] == floor and extra > 0)

    def take(p: int, m: str) -> None:
        nonlocal extra
        if load[m] == floor:
            extra -= 1
        load[m] += 1
        owner[p] = m

    for p in partitions:  # 1. the owner it had
        if had := [m for m in ids if p in members[m].owned and room(m)]:
            take(p, had[0])
    for p in partitions:  # 2. the furthest-read copy
        if p not in owner and (warm := [m for m in ids if members[m].warmth(p) >= 0 and room(m)]):
            take(p, max(warm, key=lambda m: (members[m].warmth(p), -ids.index(m))))
    for p in partitions:  # 3. the least loaded
        if p not in owner:
            take(p, min((m for m in ids if room(m)), key=lambda m: (load[m], ids.index(m))))
    return owner


def _standbys(
    partitions: list[int],
    ids: list[str],
    members: Mapping[str, Held],
    owner: Mapping[int, str],
    replicas: int,
) -> dict[str, set[int]]:
    k = max(0, min(replicas, len(ids) - 1))
    cap = -(-k * len(partitions) // len(ids))  # ⌈k·P/N⌉
    followed: dict[str, set[int]] = {m: set() for m in ids}
    for p in partitions:
        for _ in range(k):
            free = [m for m in ids if m != owner[p] and p not in followed[m]]
            within = [m for m in free if len(followed[m]) < cap] or free
            best = min(
                within,
                key=lambda m: (-members[m].warmth(p), len(followed[m]), ids.index(m)),
            )
            followed[best].add(p)
    _spread(followed, owner, cap)
    return followed


def _spread(followed: dict[str, set[int]], owner: Mapping[int, str], cap: int) -> None:
    """Move copies off members that follow more than `cap` (the greedy pass can paint
    itself into a corner: the last partitions' only free members already full). A move
    goes to a member under the cap that may follow the partition, or through a full one
    that passes another partition on; each lowers the excess by one."""

    def free(m: str, p: int) -> bool:
        return owner[p] != m and p not in followed[m]

    def move(p: int, source: str, to: str) -> None:
        followed[source].remove(p)
        followed[to].add(p)

    def one_move(over: str, under: list[str]) -> bool:
        for p in sorted(followed[over]):
            if to := next((u for u in under if free(u, p)), None):
                move(p, over, to)
                return True
        for p in sorted(followed[over]):
            for full in (m for m in sorted(followed) if len(followed[m]) == cap and free(m, p)):
                for q in sorted(followed[full]):
                    if to := next((u for u in under if free(u, q)), None):
                        move(p, over, full)
                        move(q, full, to)
                        return True
        return False

    while over := [m for m in sorted(followed) if len(followed[m]) > cap]:
        under = [m for m in sorted(followed) if len(followed[m]) < cap]
        if not one_move(over[0], under):
            return
