"""The consent gate: fail closed, whatever the sequence of consent events and time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, find, given, settings

from streams.model import Consent, Permission, Transaction
from streams.rules.consent import FORWARD, Held, Verdict, apply_update, expire, gate
from tests import samples

Gate = Callable[[Held, Transaction, int, Permission], Verdict]
STATUSES = ["RECEIVED", "VALID", "REJECTED", "REVOKED_BY_PSU", "EXPIRED", "TERMINATED_BY_TPP"]
PERMISSIONS: list[Permission] = ["TRANSACTIONS", "BALANCES", "SUMMARIES", "ALERTS"]


@dataclass(frozen=True)
class Update:
    consent: Consent | None  # None: a tombstone


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Tx:
    booked_at: int


# Small ranges on purpose: versions and times collide often.
times = st.integers(0, 60)
consents = st.builds(
    lambda status, version, valid_until, start, end, perms: {
        **samples.CONSENT,
        "status": status,
        "updated_at": version,
        "valid_until": valid_until,
        "transaction_from": start,
        "transaction_to": end,
        "permissions": perms,
    },
    st.sampled_from(STATUSES),
    st.integers(0, 12),
    times,
    st.none() | times,
    st.none() | times,
    st.lists(st.sampled_from(PERMISSIONS), unique=True),
)
events = st.lists(
    st.tuples(
        st.integers(0, 5),  # time passes before each event
        st.one_of(st.builds(Update, st.none() | consents), st.just(Tick()), st.builds(Tx, times)),
    ),
    max_size=40,
)


def run(sequence: list[tuple[int, Any]], gate_fn: Gate) -> list[tuple[int, int, bool]]:
    """The rules over a sequence: (now, booked_at, forwarded) for every transaction."""
    held, now, verdicts = Held(), 0, []
    for step, event in sequence:
        now += step
        if isinstance(event, Update):
            held = apply_update(held, event.consent).held
        elif isinstance(event, Tick):
            held = expire(held, now).held
        else:
            tx: Transaction = {**samples.TRANSACTION, "booked_at": event.booked_at}
            verdicts.append(
                (now, event.booked_at, gate_fn(held, tx, now, "TRANSACTIONS").forwarded)
            )
    return verdicts


def oracle(sequence: list[tuple[int, Any]]) -> list[tuple[int, int, bool]]:
    """An independent model: the newest version wins; a tombstone or an ending ends it;
    a transaction may pass only under a VALID, unexpired consent that covers it."""
    newest: int | None = None
    current: Consent | None = None
    now, allowed = 0, []
    for step, event in sequence:
        now += step
        if isinstance(event, Update):
            if event.consent is None:  # the authority forgot the account: so do we
                current, newest = None, None
            elif newest is None or event.consent["updated_at"] > newest:
                newest = event.consent["updated_at"]
                current = event.consent
        elif isinstance(event, Tick):
            if (
                current is not None
                and current["status"] == "VALID"
                and now >= current["valid_until"]
            ):
                current = None
        else:
            c, b = current, event.booked_at
            ok = (
                c is not None
                and c["status"] == "VALID"
                and now < c["valid_until"]
                and b < c["valid_until"]
                and (c["transaction_from"] is None or b >= c["transaction_from"])
                and (c["transaction_to"] is None or b <= c["transaction_to"])
                and "TRANSACTIONS" in c["permissions"]
            )
            allowed.append((now, b, ok))
    return allowed


class TestFailClosed:
    @given(events)
    @settings(max_examples=500)
    def test_no_account_data_without_a_valid_consent_whatever_the_sequence(
        self, sequence: list[tuple[int, Any]]
    ) -> None:
        """Every forwarded transaction is covered by a VALID, unexpired, in-range consent
        with the permission, as the independent model computes it."""
        for (now, booked, forwarded), (_, _, allowed) in zip(
            run(sequence, gate), oracle(sequence), strict=True
        ):
            assert not forwarded or allowed, (now, booked)

    @given(events)
    @settings(max_examples=300)
    def test_the_gate_forwards_what_a_valid_consent_covers(
        self, sequence: list[tuple[int, Any]]
    ) -> None:
        """And it does not withhold what the consent allows: gate and model agree."""
        assert [v for *_, v in run(sequence, gate)] == [v for *_, v in oracle(sequence)]

    def test_a_fail_open_gate_is_caught(self) -> None:
        """A gate forwarding when no consent is held fails the property: hypothesis finds how."""

        def fail_open(held: Held, tx: Transaction, now: int, needs: Permission) -> Verdict:
            return FORWARD if held.consent is None else gate(held, tx, now, needs)

        def violates(sequence: list[tuple[int, Any]]) -> bool:
            return any(
                f and not a
                for (*_, f), (*_, a) in zip(run(sequence, fail_open), oracle(sequence), strict=True)
            )

        counterexample = find(
            events, violates, settings=settings(suppress_health_check=list(HealthCheck))
        )
        assert violates(counterexample)


def valid(**changes: Any) -> Consent:
    base: Consent = {
        **samples.CONSENT,
        "status": "VALID",
        "updated_at": 10,
        "valid_until": 1000,
        "transaction_from": None,
        "transaction_to": None,
        "permissions": ["TRANSACTIONS", "ALERTS"],
    }
    return {**base, **changes}  # type: ignore[typeddict-item]  # test records


def tx(booked_at: int = 100) -> Transaction:
    return {**samples.TRANSACTION, "booked_at": booked_at}


def holding(*updates: Consent | None) -> Held:
    held = Held()
    for update in updates:
        held = apply_update(held, update).held
    return held


class TestGateReasons:
    def test_nothing_held_withholds_as_no_consent(self) -> None:
        """An account nobody consented for is withheld: NO_CONSENT."""
        assert gate(Held(), tx(), 100, "TRANSACTIONS") == Verdict(False, "NO_CONSENT")

    def test_a_received_consent_is_not_yet_valid(self) -> None:
        """A consent still awaiting authorisation lets nothing through."""
        assert (
            gate(holding(valid(status="RECEIVED")), tx(), 100, "TRANSACTIONS").reason
            == "NOT_YET_VALID"
        )

    def test_past_valid_until_is_expired_even_without_a_tick(self) -> None:
        """Time past valid_until withholds before any tick has ended the consent."""
        assert gate(holding(valid()), tx(100), 1000, "TRANSACTIONS").reason == "EXPIRED"

    def test_booked_outside_the_range_is_out_of_range(self) -> None:
        """A transaction booked before transaction_from is withheld."""
        held = holding(valid(transaction_from=200))
        assert gate(held, tx(100), 300, "TRANSACTIONS").reason == "OUT_OF_RANGE"

    def test_a_missing_permission_withholds(self) -> None:
        """An output needing BALANCES is withheld under a consent without it."""
        assert gate(holding(valid()), tx(), 100, "BALANCES").reason == "PERMISSION"

    def test_a_valid_covering_consent_forwards(self) -> None:
        """VALID, unexpired, in range, permitted: forwarded."""
        assert gate(holding(valid()), tx(), 100, "TRANSACTIONS") == FORWARD


class TestConsentLifecycle:
    def test_a_revocation_ends_and_keeps_a_marker(self) -> None:
        """REVOKED_BY_PSU ends the live consent; what is left says which version ended."""
        change = apply_update(holding(valid()), valid(status="REVOKED_BY_PSU", updated_at=11))
        assert change.outcome == "ended" and change.held.consent is None
        assert change.held.ended is not None and change.held.ended.version == 11

    def test_a_late_older_valid_cannot_revive(self) -> None:
        """After a revocation at version 11, a VALID of version 10 arriving late is ignored."""
        held = holding(valid(), valid(status="REVOKED_BY_PSU", updated_at=11))
        assert apply_update(held, valid(updated_at=10)).outcome == "ignored"
        assert (
            gate(apply_update(held, valid(updated_at=10)).held, tx(), 100, "TRANSACTIONS").reason
            == "REVOKED"
        )

    def test_a_newer_grant_after_an_end_is_held(self) -> None:
        """A new consent, newer than the ended one, starts again."""
        held = holding(valid(), valid(status="REVOKED_BY_PSU", updated_at=11), valid(updated_at=12))
        assert gate(held, tx(), 100, "TRANSACTIONS") == FORWARD

    def test_a_tombstone_ends_the_live_consent_and_keeps_nothing(self) -> None:
        """A null record on consents.v1 ends what is held (reason TOMBSTONE) and leaves
        no marker: the account's key is kept nowhere."""
        change = apply_update(holding(valid()), None)
        assert change.outcome == "ended" and change.marker is not None
        assert change.marker.reason == "TOMBSTONE" and change.held == Held()

    def test_a_tombstone_after_an_end_drops_the_marker(self) -> None:
        """The ended marker lasts until the authority's tombstone; after it, the next
        record starts afresh, whatever its version."""
        ended = holding(valid(), valid(status="REVOKED_BY_PSU", updated_at=11))
        assert ended.ended is not None
        change = apply_update(ended, None)
        assert change.outcome == "updated" and change.held == Held()
        assert gate(apply_update(change.held, valid(updated_at=5)).held, tx(), 100,
                    "TRANSACTIONS") == FORWARD  # fmt: skip
        assert apply_update(Held(), None).outcome == "ignored"

    def test_a_tick_past_valid_until_ends_as_expired(self) -> None:
        """Expiry needs no consent event: a tick at valid_until ends the consent."""
        assert expire(holding(valid()), 999).outcome == "ignored"
        change = expire(holding(valid()), 1000)
        assert change.outcome == "ended" and change.held.ended is not None
        assert change.held.ended.reason == "EXPIRED"

    def test_an_out_of_order_update_is_ignored(self) -> None:
        """An update no newer than the one held changes nothing."""
        assert (
            apply_update(holding(valid(updated_at=10)), valid(updated_at=10, valid_until=5)).outcome
            == "ignored"
        )
