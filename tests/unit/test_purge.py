"""What a stage deletes of its own input stream, and when (`streams.core.purge`); the
deletion itself is tested on a broker (tests/integration/test_privacy.py)."""

from __future__ import annotations

from aiokafka import TopicPartition

from streams.catalog import Catalog
from streams.core.purge import Purge
from streams.limits import PURGE_EVERY_S
from streams.settings import Settings

TP, OTHER = TopicPartition("app.accounts", 0), TopicPartition("app.accounts", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def purge(after_s: int = 600) -> tuple[Purge, Clock]:
    clock = Clock()
    return Purge(Settings(purge_after_s=after_s), "accounts", clock=clock), clock


def test_what_was_committed_is_due_only_once_it_is_old_enough() -> None:
    """Committed at 10 then 20 at t and t + 100 s: nothing is due before t + 600 s, then
    10, then 20 (the highest offset committed long enough ago)."""
    p, clock = purge()
    p.committed(TP, 10)
    clock.now += 100
    p.committed(TP, 20)
    clock.now += 499
    assert p.due() == {}
    clock.now += 1
    assert p.due() == {TP: 10}
    clock.now += 100
    assert p.due() == {TP: 20}
    assert p.due() == {}, "each offset is due once"


def test_a_revoked_partition_is_left_to_its_new_owner() -> None:
    p, _ = purge(after_s=0)
    p.committed(TP, 10)
    p.committed(OTHER, 5)
    p.forget([TP])
    assert p.due() == {OTHER: 5}


def test_a_stage_without_purge_remembers_nothing() -> None:
    """A stage whose input is not ours (a bank's topic) never deletes from it."""
    clock = Clock()
    p = Purge(Settings(purge_after_s=0), "ingest", enabled=False, clock=clock)
    p.committed(TP, 10)
    assert p.due() == {}


def test_the_catalog_states_the_bound_the_engine_keeps() -> None:
    """Our streams say a record lasts the purge delay and one purge round once read; the
    erasure receipt promises that, not the topic's 7 days."""
    cat = Catalog(Settings(purge_after_s=600))
    for topic in (cat.account_stream(), cat.psid_stream()):
        assert topic.removal_bound_ms == (600 + PURGE_EVERY_S) * 1000
    assert cat.changelog("accounts").purged_ms is None
