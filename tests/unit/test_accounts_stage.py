"""The accounts stage's handler on a real partition store, without a broker."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streams.agents import accounts as accounts_stage
from streams.agents.accounts import Accounts
from streams.agents.stored import (
    ACCOUNTS_TABLE,
    CONSENTS_TABLE,
    LAST_SCAN,
    META_TABLE,
    NEXT_SCAN,
    SCAN_CURSOR,
    load_held,
    next_scan,
    save_held,
    save_state,
)
from streams.catalog import Catalog
from streams.codec import Codec
from streams.core.spec import Emit
from streams.core.store import PartitionStore
from streams.crypto import Keyring
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules import accounts
from streams.rules.consent import Held
from streams.settings import Settings
from tests import samples

KEY = b"banque-alpine:FR7630006000011234567890189"


def at(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def stage(codec: Codec) -> Accounts:
    return Accounts(
        codec,
        KeyedHasher("k", "k0"),
        Catalog(Settings()),
        Metrics(CollectorRegistry()),
        Keyring.development(),
    )


SCAN_KEY = META_TABLE.encode() + b"\x00" + LAST_SCAN
NEXT_KEY = META_TABLE.encode() + b"\x00" + NEXT_SCAN


def store_with_activity(tmp_path: Path, valid_until: int | None = None) -> PartitionStore:
    """A committed account: a VALID consent and one purchase on 2026-11-28 (Paris)."""
    store = PartitionStore(tmp_path / "p0")
    consent = {
        **samples.CONSENT,
        "valid_until": valid_until or at("2027-01-01T00:00:00+00:00"),
        "permissions": ["TRANSACTIONS", "SUMMARIES"],
        "daily_digest": True,
    }
    held = Held(consent, None, linked=True)  # type: ignore[arg-type]  # a sample Consent
    save_held(store, KEY, held)
    state = accounts.new_state()
    tx = {**samples.TRANSACTION, "booked_at": at("2026-11-28T12:00:00+00:00")}
    accounts.apply(state, tx, consent, tx["booked_at"])  # type: ignore[arg-type]  # samples
    save_state(store, KEY, state)
    store.commit(1)
    return store


class TestTick:
    def test_a_consent_held_from_before_the_conversation_is_linked_once_by_the_scan(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """A Held stored before links existed (no `linked`): the first scan writes its
        psid's link and marks it; the next minute's scan writes nothing."""
        store = PartitionStore(tmp_path / "p0")
        consent = {**samples.CONSENT, "valid_until": at("2027-01-01T00:00:00+00:00")}
        save_held(store, KEY, Held(consent))  # type: ignore[arg-type]  # a sample Consent
        store.commit(1)
        first = stage(codec).tick(store, at("2026-11-28T20:00:00+00:00"))
        assert [(e.key, dict(e.headers)["kind"]) for e in first] == [
            (samples.CONSENT["psid"].encode(), b"link")
        ]
        store.commit(2)
        assert stage(codec).tick(store, at("2026-11-28T20:01:00+00:00")) == []

    def test_a_tick_with_nothing_due_writes_only_the_minute_and_the_next_due(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """Before the local day ends a tick changes no account: no output, and the only
        changelog records are the minute of the scan and when an account is next due (the
        end of the 28th in Paris)."""
        store = store_with_activity(tmp_path)
        emits = stage(codec).tick(store, at("2026-11-28T22:30:00+00:00"))
        assert emits == [] and set(store.pending()) == {SCAN_KEY, NEXT_KEY}
        assert next_scan(store) == at("2026-11-29T00:00:00+01:00")

    def test_a_scan_starts_only_once_an_account_is_due(
        self, codec: Codec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a scan found the account due at the end of its local day (Paris), the
        minutes before that read no account; the first tick after it reads it and
        releases the digest."""
        store = store_with_activity(tmp_path)
        handler, read = stage(codec), list[bytes | str]()
        scan = handler.scan

        def reading(store: PartitionStore, key: bytes, held: Held, now: int) -> list[Emit]:
            read.append(key)
            return scan(store, key, held, now)

        monkeypatch.setattr(handler, "scan", reading)
        outputs = []
        for time in ("22:30", "22:45", "22:59", "23:00"):
            outputs.append(len(handler.tick(store, at(f"2026-11-28T{time}:00+00:00"))))
            store.commit(len(outputs) + 1)
            read.append(time)
        assert read == [KEY, "22:30", "22:45", "22:59", KEY, "23:00"]
        assert outputs == [0, 0, 0, 2]  # the digest and its Disclosure

    def test_an_hour_after_a_scan_began_another_starts_whatever_is_due(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """However far the next due instant (a consent valid for a year, no activity), the
        partition is scanned again an hour after the last scan began."""
        store = PartitionStore(tmp_path / "p0")
        consent = {**samples.CONSENT, "valid_until": at("2027-12-01T00:00:00+00:00")}
        save_held(store, KEY, Held(consent, linked=True))  # type: ignore[arg-type]  # a sample
        store.commit(1)
        handler = stage(codec)
        handler.tick(store, at("2026-11-28T20:00:00+00:00"))
        store.commit(2)
        assert next_scan(store) == at("2026-11-28T21:00:00+00:00")
        handler.tick(store, at("2026-11-28T21:00:00+00:00"))
        assert next_scan(store) == at("2026-11-28T22:00:00+00:00")

    def test_a_second_tick_in_the_same_minute_does_not_scan(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """Ticks come every second; accounts are scanned once per minute of tick time,
        so a consent that expires mid-minute is ended by the next minute's first tick."""
        store = store_with_activity(tmp_path, valid_until=at("2026-11-28T20:00:30+00:00"))
        assert stage(codec).tick(store, at("2026-11-28T20:00:10+00:00")) == []
        store.commit(2)
        assert stage(codec).tick(store, at("2026-11-28T20:00:40+00:00")) == []
        assert store.pending() == {}
        ended = stage(codec).tick(store, at("2026-11-28T20:01:00+00:00"))
        assert len(ended) == 4  # the psid's unlink, the receipt, CONSENT_ENDED and its Disclosure

    def test_the_tick_after_local_midnight_releases_the_digest_once(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """The first tick past midnight emits the digest (and its Disclosure) and saves the
        state; the next nothing."""
        store = store_with_activity(tmp_path)
        first = stage(codec).tick(store, at("2026-11-28T23:30:00+00:00"))
        assert [e.topic for e in first] == ["messenger.notifications.v1", "passerelle.audit.v1"]
        assert ACCOUNTS_TABLE.encode() + b"\x00" + KEY in store.pending()
        store.commit(2)
        assert stage(codec).tick(store, at("2026-11-29T00:30:00+00:00")) == []
        assert set(store.pending()) <= {SCAN_KEY, NEXT_KEY}  # no account written

    def test_a_scan_reads_a_slice_per_tick_and_goes_on_where_it_stopped(
        self, codec: Codec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Five expired consents, two accounts per tick: the scan started in one minute
        ends two, two, then one consent on three ticks, in key order, and the next
        scan waits for a later minute."""
        monkeypatch.setattr(accounts_stage, "SCAN_SLICE", 2)
        store = PartitionStore(tmp_path / "p0")
        expired = {**samples.CONSENT, "valid_until": at("2026-11-28T20:00:00+00:00")}
        keys = [b"banque-alpine:FR76%d" % n for n in range(5)]
        for key in keys:
            save_held(store, key, Held(expired, None))  # type: ignore[arg-type]  # a sample Consent
        store.commit(1)
        handler = stage(codec)
        ended, cursors = [], []
        for second in (10, 11, 12, 13):
            emits = handler.tick(store, at(f"2026-11-28T20:05:{second}+00:00"))
            ended.append(len(emits) // 4)  # an unlink, a receipt, CONSENT_ENDED, its Disclosure
            cursors.append(store.get(META_TABLE, SCAN_CURSOR))
            store.commit(1 + second)
        assert ended == [2, 2, 1, 0]
        assert cursors == [keys[1], keys[3], None, None]
        assert handler.tick(store, at("2026-11-28T20:06:00+00:00")) == []  # all ended already
        assert SCAN_KEY in store.pending()  # the minute is kept; no account is due until
        assert next_scan(store) == at("2026-11-28T21:05:10+00:00")  # an hour after the scan


class TestErasure:
    def test_a_revocation_leaves_a_marker_that_the_authoritys_tombstone_removes(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """After a revocation only the ended marker stays under the account's key; the
        consent authority's tombstone then deletes that key too (a changelog tombstone),
        so nothing names the account in the store once both have been read."""
        store = store_with_activity(tmp_path)
        handler, now = stage(codec), at("2026-11-29T10:00:00+00:00")
        revoked = {**samples.CONSENT, "status": "REVOKED_BY_PSU", "updated_at": now}
        handler.consent(KEY, codec.encode("passerelle.Consent", revoked), store, now)
        store.commit(2)
        marker = load_held(store, KEY)
        assert marker.consent is None and marker.ended is not None
        assert store.get(ACCOUNTS_TABLE, KEY) is None
        assert handler.consent(KEY, None, store, now + 1) == [], "nothing left to end or tell"
        assert store.get(CONSENTS_TABLE, KEY) is None
        assert list(store.pending().values()) == [None], "the changelog gets a tombstone"
        store.commit(3)
        assert [k for k, _ in store.items(CONSENTS_TABLE)] == []
