"""The accounts stage's stored values: golden bytes, because a worker restores its state
from changelog records that earlier versions wrote."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.agents.stored import (
    decode_held,
    decode_state,
    encode_held,
    encode_state,
    load_asked,
    next_scan,
    save_asked,
    save_held,
    save_state,
    scan_by,
)
from streams.core.store import PartitionStore
from streams.model import Consent, Transaction
from streams.rules import accounts
from streams.rules.consent import Ended, Held
from tests import samples

NOON = int(dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC).timestamp() * 1000)
HOUR = 3_600_000


def test_an_ended_unreadable_account_is_stored_as_it_always_was() -> None:
    """A Held's bytes name the consent, the ended marker and (only when set) unreadable."""
    held = Held(None, Ended("c-1", 1764000000000, "REVOKED_BY_PSU"), unreadable=True)
    golden = (
        b'{"consent": null, "ended": {"consent_id": "c-1", "version": 1764000000000, '
        b'"reason": "REVOKED_BY_PSU"}, "unreadable": true}'
    )
    assert encode_held(held) == golden and decode_held(golden) == held


def test_a_held_stored_before_the_unreadable_flag_reads_as_readable() -> None:
    """Bytes without `unreadable` (every consent stored before it existed) decode to a
    readable Held, and a readable Held is stored without the flag."""
    consent: Any = {"consent_id": "c-2", "updated_at": 5}
    stored = b'{"consent": {"consent_id": "c-2", "updated_at": 5}, "ended": null}'
    assert decode_held(stored) == Held(consent) and encode_held(Held(consent)) == stored


def test_the_customers_choices_are_stored_with_the_consent_and_only_when_made() -> None:
    """A paused, discreet consent stores both choices after what was there before; a
    Held without them stores (and so restores) as it did before they existed."""
    consent: Any = {"consent_id": "c-3", "updated_at": 6}
    held = Held(consent, muted="PAUSE", discreet=True)
    golden = (
        b'{"consent": {"consent_id": "c-3", "updated_at": 6}, "ended": null, '
        b'"muted": "PAUSE", "discreet": true}'
    )
    assert encode_held(held) == golden and decode_held(golden) == held


def test_discreet_off_is_stored_and_overrides_a_discreet_consent() -> None:
    """The customer's DISCREET off is a choice too (stored as false): it shows a DISCREET
    consent's details; not chosen (no key, as every Held stored before), the consent's
    display decides."""
    consent: Any = {"consent_id": "c-4", "updated_at": 7, "display": "DISCREET"}
    chose_off = Held(consent, discreet=False)
    stored = encode_held(chose_off)
    assert stored.endswith(b'"discreet": false}') and decode_held(stored) == chose_off
    assert not chose_off.shows_discreetly
    unchosen = decode_held(b'{"consent": {"display": "DISCREET"}, "ended": null}')
    assert unchosen.discreet is None and unchosen.shows_discreetly
    assert not decode_held(b'{"consent": {"consent_id": "v1"}, "ended": null}').shows_discreetly


def test_a_summary_after_one_purchase_is_stored_as_these_bytes() -> None:
    """The summary the rules build for one booked purchase encodes to these bytes, and
    decodes back to an equal summary. (`seen_since` since 2026-12-07; a summary without
    it still reads: test_accounts.py.)"""
    consent: Consent = {**samples.CONSENT, "timezone": "Europe/Paris"}
    tx: Transaction = {
        **samples.TRANSACTION,
        "transaction_id": "t-1",
        "status": "BOOKED",
        "pending_transaction_id": None,
        "amount_minor": -1250,
        "currency": "EUR",
        "balance_after_minor": 40000,
        "mcc": "5411",
        "booked_at": NOON,
    }
    state = accounts.new_state()
    accounts.apply(state, tx, consent, NOON)
    golden = (
        b'{"balance":40000,"below":false,'
        b'"days":{"2026-11-28":{"spent":{"groceries":1250},"received":{},"count":1}},'
        b'"month":"2026-11","month_totals":{"spent":{"groceries":1250},"received":{},"count":1},'
        b'"seen":{"t-1":' + str(NOON).encode() + b'},"pending":{},'
        b'"counted":{"t-1":{"amount":-1250,"category":"groceries","day":"2026-11-28"}},'
        b'"digested":[],"currency":"EUR","seen_since":' + str(NOON).encode() + b","
        b'"recent":[{"id":"t-1","amount":-1250,'
        + '"merchant":"Boulangerie Pâtissière",'.encode()
        + b'"category":"groceries",'
        b'"booked_at":' + str(NOON).encode() + b"}]}"
    )
    assert encode_state(state) == golden and decode_state(golden) == state


def test_a_summary_stored_before_recent_transactions_were_kept_still_reads() -> None:
    """A summary written before `recent` existed decodes, and answers with none."""
    older = (
        b'{"balance":40000,"below":false,"days":{},"month":"2026-11",'
        b'"month_totals":{"spent":{"groceries":1250},"received":{},"count":1},'
        b'"seen":{},"pending":{},"counted":{},"digested":[],"currency":"EUR"}'
    )
    state = decode_state(older)
    assert state["balance"] == 40000 and state.get("recent", []) == []


@pytest.mark.parametrize(
    "refused", [{"merchant": "caf\ud800"}, {"balance": 2**64}], ids=["surrogate", "bigint"]
)
def test_a_summary_orjson_refuses_to_write_is_written_by_json(refused: dict[str, Any]) -> None:
    """A summary holding what orjson refuses to write (a lone surrogate, an integer past
    64 bits) is written as the standard library writes it, and reads back the same."""
    state = {**accounts.new_state(), **refused}
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(state)
    assert decode_state(encode_state(state)) == state  # type: ignore[arg-type]  # test record


def test_what_orjson_refuses_reads_as_it_always_did(tmp_path: Path) -> None:
    """A question's mid that carried a lone surrogate's escape (written by `json`, which
    escapes it; orjson refuses it) still reads back, as the standard library reads it."""
    asked = {"m\ud800": 1764000000000}
    store = PartitionStore(tmp_path / "p0")
    save_asked(store, b"k", asked)
    assert load_asked(store, b"k") == asked


class TestNextScan:
    """Every write of an account brings the partition's next scan forward to when the
    account is due, never back; unknown (a store from before it was kept) stays so."""

    def consent(self, valid_until: int) -> Any:
        return {**samples.CONSENT, "valid_until": valid_until, "timezone": "Europe/Paris"}

    def test_a_consent_that_expires_sooner_brings_the_next_scan_forward(
        self, tmp_path: Path
    ) -> None:
        store = PartitionStore(tmp_path / "p0")
        scan_by(store, NOON + 10 * HOUR, start=True)
        save_held(store, b"k", Held(self.consent(NOON + 2 * HOUR), linked=True))
        assert next_scan(store) == NOON + 2 * HOUR
        save_held(store, b"k", Held(self.consent(NOON + 5 * HOUR), linked=True))
        assert next_scan(store) == NOON + 2 * HOUR  # never back: the scan finds out

    def test_a_new_local_day_of_activity_brings_the_next_scan_to_its_end(
        self, tmp_path: Path
    ) -> None:
        store = PartitionStore(tmp_path / "p0")
        consent = self.consent(NOON + 100 * HOUR)
        save_held(store, b"k", Held(consent, linked=True))
        scan_by(store, NOON + 50 * HOUR, start=True)
        state = accounts.new_state()
        tx: Any = {**samples.TRANSACTION, "booked_at": NOON}
        accounts.apply(state, tx, consent, NOON)
        save_state(store, b"k", state)
        assert next_scan(store) == NOON + 11 * HOUR  # midnight in Paris (UTC+1)

    def test_an_unknown_next_scan_stays_unknown(self, tmp_path: Path) -> None:
        store = PartitionStore(tmp_path / "p0")
        save_held(store, b"k", Held(self.consent(NOON + HOUR), linked=True))
        assert next_scan(store) is None
