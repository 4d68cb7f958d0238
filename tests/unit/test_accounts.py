"""Per-account summaries: duplicates, one purchase, reversals, staleness, alerts, digests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.model import Consent, Transaction
from streams.rules import accounts
from streams.rules.accounts import Effect
from tests import samples


def at(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


NOON = at("2026-11-28T12:00:00+00:00")


def consent(**changes: Any) -> Consent:
    base = {**samples.CONSENT, "large_amount_minor": 50_000, "low_balance_minor": 10_000}
    return {**base, **changes}  # type: ignore[typeddict-item]  # test records


def tx(n: int, amount: int = -1_000, **changes: Any) -> Transaction:
    base = {
        **samples.TRANSACTION,
        "transaction_id": f"t{n}",
        "status": "BOOKED",
        "pending_transaction_id": None,
        "amount_minor": amount,
        "booked_at": NOON,
        "balance_after_minor": None,
        "mcc": "5462",
    }
    return {**base, **changes}  # type: ignore[typeddict-item]  # test records


def today(state: accounts.State) -> accounts.Totals:
    return state["days"]["2026-11-28"]


class TestFolding:
    def test_a_purchase_counts_and_notifies(self) -> None:
        """A booked debit adds to today's spend in its category and asks for a TRANSACTION."""
        state = accounts.new_state()
        assert accounts.apply(state, tx(1), consent(), NOON) == Effect(notify=True)
        assert today(state) == {"spent": {"groceries": 1000}, "received": {}, "count": 1}

    def test_a_repeated_transaction_id_is_a_duplicate(self) -> None:
        """The same transaction id again changes nothing and is withheld as DUPLICATE."""
        state = accounts.new_state()
        accounts.apply(state, tx(1), consent(), NOON)
        assert accounts.apply(state, tx(1), consent(), NOON).duplicate
        assert today(state)["count"] == 1

    def test_an_id_is_remembered_for_the_dedupe_window_and_forgotten_after(self) -> None:
        """An id seen exactly DEDUPE_WINDOW_MS ago is still a duplicate; a moment later the
        next transaction forgets it (and what it counted), while newer ids stay."""
        state = accounts.new_state()
        accounts.apply(state, tx(1, booked_at=NOON), consent(), NOON)
        later = NOON + accounts.DEDUPE_WINDOW_MS
        accounts.apply(state, tx(2, booked_at=later), consent(), later)
        assert accounts.apply(state, tx(1), consent(), later).duplicate
        accounts.apply(state, tx(3, booked_at=later + 1), consent(), later + 1)
        assert (set(state["seen"]), set(state["counted"])) == ({"t2", "t3"}, {"t2", "t3"})
        assert not accounts.apply(state, tx(1), consent(), later + 1).duplicate

    def test_a_summary_stored_before_the_windows_start_was_kept_prunes_the_same(self) -> None:
        """A summary without `seen_since` (stored before it was kept) forgets what left the
        window as any other, and keeps it from then on."""
        state = accounts.new_state()
        accounts.apply(state, tx(1, booked_at=NOON), consent(), NOON)
        accounts.apply(state, tx(2, booked_at=NOON + 5), consent(), NOON + 5)
        del state["seen_since"]
        later = NOON + accounts.DEDUPE_WINDOW_MS + 1
        accounts.apply(state, tx(3, booked_at=later), consent(), later)
        assert (state["seen"], state.get("seen_since")) == ({"t2": NOON + 5, "t3": later}, NOON + 5)

    def test_pending_then_booked_is_one_purchase(self) -> None:
        """The BOOKED settling a PENDING corrects the amount; no second count, no notification."""
        state = accounts.new_state()
        assert accounts.apply(state, tx(1, -1_000, status="PENDING"), consent(), NOON).notify
        settle = accounts.apply(state, tx(2, -1_250, pending_transaction_id="t1"), consent(), NOON)
        assert not settle.notify
        assert today(state) == {"spent": {"groceries": 1250}, "received": {}, "count": 1}

    def test_a_smaller_settlement_lowers_the_spend(self) -> None:
        """A BOOKED below its PENDING takes the difference back from spend, not into income."""
        state = accounts.new_state()
        accounts.apply(state, tx(1, -1_000, status="PENDING"), consent(), NOON)
        accounts.apply(state, tx(2, -800, pending_transaction_id="t1"), consent(), NOON)
        assert today(state) == {"spent": {"groceries": 800}, "received": {}, "count": 1}

    def test_a_reversal_undoes_what_it_names(self) -> None:
        """REVERSED takes its target out of the day's and the month's totals."""
        state = accounts.new_state()
        accounts.apply(state, tx(1, -1_000), consent(), NOON)
        accounts.apply(
            state, tx(2, 1_000, status="REVERSED", reversed_transaction_id="t1"), consent(), NOON
        )
        assert today(state) == {"spent": {"groceries": 0}, "received": {}, "count": 0}
        assert state["month_totals"]["count"] == 0

    def test_a_stale_event_counts_but_notifies_nothing(self) -> None:
        """Booked more than 48 h ago: the summary moves, no notification, no alert."""
        state = accounts.new_state()
        old = tx(1, -90_000, booked_at=NOON - 3 * accounts.DAY_MS, balance_after_minor=5)
        assert accounts.apply(state, old, consent(), NOON) == Effect(stale=True)
        assert state["month_totals"]["count"] == 1 and state["balance"] == 5

    def test_large_amounts_alert(self) -> None:
        """A debit at or above large_amount_minor asks for LARGE_TRANSACTION too."""
        assert accounts.apply(accounts.new_state(), tx(1, -50_000), consent(), NOON).large

    def test_low_balance_fires_once_per_crossing(self) -> None:
        """Below the threshold: one alert; still below: none; back above then below: one again."""
        state = accounts.new_state()
        fired = [
            accounts.apply(state, tx(n, balance_after_minor=b), consent(), NOON).low_balance
            for n, b in enumerate([20_000, 9_000, 8_000, 12_000, 7_000])
        ]
        assert fired == [False, True, False, False, True]


class TestDigests:
    def test_a_digest_is_due_after_the_local_day_ends_once(self) -> None:
        """The first tick after local midnight yields the day's digest; later ticks nothing."""
        state = accounts.new_state()
        accounts.apply(state, tx(1, -1_250), consent(), NOON)
        assert accounts.due_digests(state, consent(), at("2026-11-28T22:59:00+00:00")) == []
        [digest] = accounts.due_digests(state, consent(), at("2026-11-28T23:00:00+00:00"))
        assert (digest["local_date"], digest["spent_minor"], digest["transaction_count"]) == (
            "2026-11-28",
            1_250,
            1,
        )
        assert accounts.due_digests(state, consent(), at("2026-11-29T23:00:00+00:00")) == []

    def test_each_account_follows_its_own_time_zone(self) -> None:
        """At 23:30 UTC Paris has passed midnight, New York has not."""
        late = at("2026-11-28T22:30:00+00:00")
        tick = at("2026-11-28T23:30:00+00:00")
        for zone, due in [("Europe/Paris", 1), ("America/New_York", 0)]:
            state = accounts.new_state()
            accounts.apply(state, tx(1, booked_at=late), consent(timezone=zone), late)
            assert len(accounts.due_digests(state, consent(timezone=zone), tick)) == due

    def test_the_short_dst_day_ends_at_local_midnight(self) -> None:
        """On 29 March 2026 Paris has 23 hours: its midnight is 22:00 UTC, not 23:00."""
        booked = at("2026-03-29T20:00:00+00:00")
        state = accounts.new_state()
        accounts.apply(state, tx(1, booked_at=booked), consent(), booked)
        assert accounts.due_digests(state, consent(), at("2026-03-29T21:59:59+00:00")) == []
        assert len(accounts.due_digests(state, consent(), at("2026-03-29T22:00:00+00:00"))) == 1

    def test_a_late_event_for_a_digested_day_does_not_digest_it_again(self) -> None:
        """Once per account per local day, even when an event of that day arrives late."""
        state = accounts.new_state()
        accounts.apply(state, tx(1), consent(), NOON)
        accounts.due_digests(state, consent(), at("2026-11-29T06:00:00+00:00"))
        accounts.apply(state, tx(2), consent(), at("2026-11-29T06:00:00+00:00"))
        assert accounts.due_digests(state, consent(), at("2026-11-30T06:00:00+00:00")) == []
        assert state["month_totals"]["count"] == 2


# Past the window by up to three days, in steps of an hour: ids leave the window.
hours = st.integers(0, (accounts.DEDUPE_WINDOW_MS + 3 * accounts.DAY_MS) // 3_600_000)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), hours, st.integers(-1, 1), hours, st.booleans()),
        max_size=60,
    )
)
def test_the_dedupe_window_is_the_naive_one(steps: list[tuple[int, int, int, int, bool]]) -> None:
    """Whatever the order of ids, booking times and clock, an id is a duplicate exactly
    when the naive window (every id's booking time looked at on each transaction) holds
    it, and the summary keeps that window and its earliest booking time; also when the
    summary comes from before `seen_since` was kept (`old`: the key dropped)."""
    state, model = accounts.new_state(), dict[str, int]()
    now = NOON
    for n, booked_h, booked_ms, clock_h, old in steps:
        now = max(now, NOON + clock_h * 3_600_000)  # the stage's clock does not go back
        booked = NOON + booked_h * 3_600_000 + booked_ms  # a millisecond either side too
        duplicate = f"t{n}" in model
        if not duplicate:
            model = {k: v for k, v in model.items() if v >= now - accounts.DEDUPE_WINDOW_MS}
            model[f"t{n}"] = booked
        if old:
            state.pop("seen_since", None)
        assert accounts.apply(state, tx(n, booked_at=booked), consent(), now).duplicate == duplicate
        assert state["seen"] == model
        assert set(state["counted"]) <= set(model)
        if not duplicate or "seen_since" in state:  # a duplicate writes nothing
            assert state.get("seen_since") == min(model.values())
