"""When an account is next due, checked against the rules a scan runs: before its due
instant a scan would change nothing; at it, something."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.rules import accounts
from streams.rules.consent import Held, expire
from streams.rules.due import day_end, next_due
from tests import samples

HOUR = 3_600_000
DAY = 24 * HOUR
START = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
# DST at 02:00 or 03:00 (Paris, New York), half-hour shifts (Lord Howe), a zone that
# skipped midnight itself (Havana, 2026-03-08 00:00 -> 01:00), and none (Kolkata).
ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Havana",
    "Asia/Kolkata",
    "UTC",
]
STATUSES = ["VALID", "VALID", "VALID", "SUSPENDED", "REVOKED_BY_PSU"]

instants = st.integers(START, START + 300 * DAY)


@st.composite
def accounts_held(draw: st.DrawFn) -> tuple[Held, accounts.State | None]:
    """A consent (or none), linked or not, and a summary with 0-3 local days of activity."""
    if draw(st.booleans()) and draw(st.booleans()):
        return Held(), None
    zone = draw(st.sampled_from(ZONES))
    consent: Any = {
        **samples.CONSENT,
        "status": draw(st.sampled_from(STATUSES)),
        "valid_until": draw(instants),
        "timezone": zone,
        "permissions": ["TRANSACTIONS", "SUMMARIES"],
    }
    state = None
    if draw(st.booleans()):
        state = accounts.new_state()
        for n, booked in enumerate(draw(st.lists(instants, max_size=3))):
            tx = {**samples.TRANSACTION, "transaction_id": f"t{n}", "booked_at": booked}
            accounts.apply(state, tx, consent, booked)  # type: ignore[arg-type]  # samples
    return Held(consent, linked=draw(st.booleans())), state


def changes(held: Held, state: accounts.State | None, now: int) -> bool:
    """Whether a scan at `now` would change the account: what `Accounts.scan` runs."""
    if held.consent is None:
        return False
    if not held.linked or expire(held, now).outcome != "ignored":
        return True
    if state is None:
        return False
    days = copy.deepcopy(state)
    accounts.due_digests(days, held.consent, now)
    return days != state


@settings(max_examples=400, deadline=None)
@given(accounts_held(), instants)
def test_before_its_due_instant_a_scan_changes_nothing(
    account: tuple[Held, accounts.State | None], now: int
) -> None:
    """At any instant before `next_due` (at every instant if None), the rules a scan
    runs change nothing: no expiry, no digest, no link."""
    held, state = account
    due = next_due(held, state)
    if due is None or now < due:
        assert not changes(held, state, now)


@settings(max_examples=400, deadline=None)
@given(accounts_held())
def test_at_its_due_instant_a_scan_changes_something(
    account: tuple[Held, accounts.State | None],
) -> None:
    """`next_due` is not merely early: at that instant the scan has work (in these zones,
    whose day ends are all instants the clock reaches)."""
    held, state = account
    due = next_due(held, state)
    if due is not None:
        assert changes(held, state, due)


@settings(max_examples=400, deadline=None)
@given(instants, st.sampled_from(ZONES))
def test_a_day_ends_at_the_first_instant_of_the_next_local_date(ms: int, zone: str) -> None:
    """`day_end` of the local date at `ms` is after `ms`; its instant is on a later local
    date, the millisecond before it on that day."""
    day = accounts.local_date(ms, zone)
    end = day_end(day.isoformat(), zone)
    assert end > ms
    assert accounts.local_date(end, zone) > day
    assert accounts.local_date(end - 1, zone) == day


def test_havanas_skipped_midnight_ends_the_day_at_one_oclock() -> None:
    """Havana went from 2026-03-07 23:59:59 straight to 2026-03-08 01:00: the 7th ends at
    that instant (05:00 UTC), not an hour later."""
    assert day_end("2026-03-07", "America/Havana") == int(
        dt.datetime(2026, 3, 8, 5, tzinfo=dt.UTC).timestamp() * 1000
    )
