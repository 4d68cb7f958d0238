"""Issue 15's seven findings, each pinned: the consent promise on the paths it broke on.

Each test runs the stages' own handlers (ingest's and accounts') on a real partition
store, without a broker, and failed on 293ce63's code.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams import catalog, crypto, model
from streams.agents import ingest
from streams.agents.accounts import Accounts
from streams.agents.stored import ACCOUNTS_TABLE, save_held, save_state
from streams.catalog import Catalog
from streams.codec import Codec
from streams.core.store import PartitionStore
from streams.core.ticks import TICK_KEY, encode_tick
from streams.crypto import Keyring
from streams.errors import SettingsError
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules import accounts
from streams.rules.consent import Held
from streams.rules.ingest import check_consent, check_transaction
from streams.settings import Settings
from tests import samples

BANK, ACCOUNT = samples.CONSENT["bank_id"], samples.CONSENT["account_id"]
KEY = f"{BANK}:{ACCOUNT}".encode()
STREAM = "passerelle.accounts"


def at(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


BOOKED = at("2026-11-28T12:00:00+00:00")
AFTER_MIDNIGHT = at("2026-11-28T23:30:00+00:00")  # 00:30 in Paris: the 28th has ended


def consent(**changes: Any) -> dict[str, Any]:
    base = {
        **samples.CONSENT,
        "permissions": ["TRANSACTIONS", "BALANCES", "SUMMARIES", "ALERTS"],
        "daily_digest": True,
        "quiet_hours": None,
        "updated_at": BOOKED - 3_600_000,
    }
    return {**base, **changes}


def record(key: bytes, value: bytes | None, kind: bytes | None, now: int, offset: int = 0) -> Any:
    headers = [("kind", kind)] if kind else []
    return ConsumerRecord(STREAM, 0, offset, now, 0, key, value, None, 0, 0, headers)


class Account:
    """One account's records through the accounts handler, each committed after it."""

    def __init__(self, codec: Codec, tmp_path: Path) -> None:
        self.codec = codec
        self.store = PartitionStore(tmp_path / "p0")
        self.handler = Accounts(
            codec,
            KeyedHasher("k", "k0"),
            Catalog(Settings()),
            Metrics(CollectorRegistry()),
            Keyring.development(),
        )
        self.offset = 0

    def handle(self, key: bytes, value: bytes | None, kind: bytes | None, now: int) -> list[Any]:
        self.offset += 1
        emits = self.handler.handle(record(key, value, kind, now, self.offset), self.store)
        self.store.commit(self.offset)
        return list(emits)

    def take(self, emit: Any, now: int) -> list[Any]:
        """What ingest wrote on the account's stream, headers and all."""
        self.offset += 1
        read = ConsumerRecord(
            STREAM, 0, self.offset, now, 0, emit.key, emit.value, None, 0, 0, list(emit.headers)
        )
        emits = self.handler.handle(read, self.store)
        self.store.commit(self.offset)
        return list(emits)

    def consent(self, now: int = BOOKED - 60_000, **changes: Any) -> list[Any]:
        value = self.codec.encode(model.CONSENT, consent(**changes))
        return self.handle(KEY, value, b"consent", now)

    def transaction(self, now: int = BOOKED, **changes: Any) -> list[Any]:
        tx = {**samples.TRANSACTION, "booked_at": now, **changes}
        return self.handle(KEY, self.codec.encode(model.TRANSACTION, tx), b"transaction", now)

    def tick(self, now: int) -> list[Any]:
        return self.handle(TICK_KEY, encode_tick(now), None, now)

    def notifications(self, emits: list[Any]) -> list[dict[str, Any]]:
        return [
            self.codec.decode(model.NOTIFICATION, e.value)
            for e in emits
            if e.topic == catalog.NOTIFICATIONS
        ]

    def audit(self, emits: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        return [self.codec.decode_any(e.value) for e in emits if e.topic == catalog.AUDIT]


class TestDigests:
    @pytest.mark.parametrize("status", ["REJECTED", "RECEIVED"])
    def test_no_digest_once_the_consent_is_no_longer_valid(
        self, codec: Codec, tmp_path: Path, status: str
    ) -> None:
        """Finding 1: VALID, a purchase, then REJECTED (or RECEIVED): the tick after local
        midnight releases no DAILY_DIGEST."""
        account = Account(codec, tmp_path)
        account.consent()
        assert account.notifications(account.transaction())  # forwarded while VALID
        account.consent(status=status, updated_at=BOOKED + 60_000, now=BOOKED + 120_000)
        assert account.notifications(account.tick(AFTER_MIDNIGHT)) == []

    def test_a_valid_consent_still_gets_its_digest(self, codec: Codec, tmp_path: Path) -> None:
        """The gate does not starve digests: VALID with SUMMARIES gets the day's digest."""
        account = Account(codec, tmp_path)
        account.consent()
        account.transaction()
        kinds = [n["kind"] for n in account.notifications(account.tick(AFTER_MIDNIGHT))]
        assert kinds == ["DAILY_DIGEST"]


class TestReplacement:
    def test_a_new_consent_id_and_psid_ends_the_old_one_and_starts_empty(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """Finding 2: another consent_id and psid for the account ends the one held
        (REPLACED receipt, CONSENT_ENDED to the old psid), erases its state, and the new
        psid gets no digest of the old consent's day."""
        account = Account(codec, tmp_path)
        account.consent()
        account.transaction()
        emits = account.consent(
            consent_id="cns-43", psid="psid-new", updated_at=BOOKED + 60_000, now=BOOKED + 60_000
        )
        receipts = [r for s, r in account.audit(emits) if s == model.ERASURE_RECEIPT]
        assert [(r["consent_id"], r["reason"]) for r in receipts] == [("cns-42", "REPLACED")]
        told = account.notifications(emits)
        assert [(n["kind"], n["psid"]) for n in told] == [
            ("CONSENT_ENDED", samples.CONSENT["psid"])
        ]
        assert account.store.get(ACCOUNTS_TABLE, KEY) is None
        assert account.notifications(account.tick(AFTER_MIDNIGHT)) == []

    def test_a_newer_version_of_the_same_consent_keeps_its_state(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """A permission change of the same consent (same id, psid, page) is an update: no
        receipt, and the day's digest still comes."""
        account = Account(codec, tmp_path)
        account.consent()
        account.transaction()
        emits = account.consent(
            large_amount_minor=1, updated_at=BOOKED + 60_000, now=BOOKED + 60_000
        )
        assert [dict(e.headers)["kind"] for e in emits] == [b"link"]  # its psid, refreshed
        assert [n["kind"] for n in account.notifications(account.tick(AFTER_MIDNIGHT))] == [
            "DAILY_DIGEST"
        ]


class TestUnreadable:
    def test_an_unreadable_consent_withholds_until_a_readable_one(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """Finding 3: a consent ingest cannot accept (a 65-character psid) marks its
        account, and the accounts stage dead-letters it sealed with the account's key: the
        next transaction is withheld (NO_CONSENT), until a newer readable consent arrives."""
        stage = ingest.spec(codec, STREAM, Metrics(CollectorRegistry()))
        bad = codec.encode(model.CONSENT, consent(psid="9" * 65, updated_at=BOOKED))
        read = ConsumerRecord(catalog.CONSENTS, 0, 5, BOOKED, 0, KEY, bad, None, 0, 0, [])
        out = list(stage.handler(read, None))  # type: ignore[arg-type]  # ingest keeps no state
        assert [(e.topic, dict(e.headers).get("reason")) for e in out] == [
            (STREAM, b"FIELD_TOO_LONG")
        ]
        [marker] = out
        account = Account(codec, tmp_path)
        account.consent()
        assert marker.key == KEY
        [letter] = [e for e in account.take(marker, BOOKED) if e.topic == catalog.DLQ]
        hashed = account.handler.records.account_hash(KEY)
        assert letter.key == hashed.encode() and b"9" * 65 not in letter.value
        assert dict(letter.headers)["reason"] == b"FIELD_TOO_LONG"
        data_key = account.handler.sealer.data_key(account.store, hashed, BOOKED)
        assert crypto.open_sealed(data_key, letter.value, hashed) == bad
        withheld = account.transaction(now=BOOKED + 60_000)
        assert account.notifications(withheld) == []
        decisions = [d for s, d in account.audit(withheld) if s == model.DECISION]
        assert [(d["outcome"], d["reason"]) for d in decisions] == [("WITHHELD", "NO_CONSENT")]
        account.consent(updated_at=BOOKED + 120_000, now=BOOKED + 120_000)
        again = account.transaction(now=BOOKED + 180_000, transaction_id="tx-000002")
        assert [n["kind"] for n in account.notifications(again)] == [
            "TRANSACTION",
            "LARGE_TRANSACTION",
        ]


class TestAlertsOnly:
    def test_a_large_transaction_alert_names_no_amount_or_merchant(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """Finding 4: under ALERTS alone, LARGE_TRANSACTION says a large transaction was
        made on the masked account, with no amount, merchant or balance, in text or data."""
        account = Account(codec, tmp_path)
        account.consent(permissions=["ALERTS"])
        (alert,) = account.notifications(account.transaction())
        assert alert["kind"] == "LARGE_TRANSACTION"
        assert alert["text"] == "Opération importante sur le compte •••• 0189"
        assert {k for k, v in alert["data"].items() if v is not None} == {"account_masked"}

    def test_low_balance_needs_balances(self, codec: Codec, tmp_path: Path) -> None:
        """Finding 4: a balance crossing is balance data: no LOW_BALANCE without BALANCES,
        and with it, no merchant unless TRANSACTIONS."""
        low = {"balance_after_minor": 500, "amount_minor": -100}
        account = Account(codec, tmp_path / "a")
        account.consent(permissions=["ALERTS"])
        assert account.notifications(account.transaction(**low)) == []
        account = Account(codec, tmp_path / "b")
        account.consent(permissions=["ALERTS", "BALANCES"])
        (alert,) = account.notifications(account.transaction(**low))
        assert alert["kind"] == "LOW_BALANCE" and alert["data"]["merchant_name"] is None
        assert "Boulangerie" not in alert["text"] and alert["data"]["balance_minor"] == 500


class TestAtTheDoor:
    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"timezone": "Mars/Olympus"}, "BAD_TIMEZONE"),
            ({"timezone": "Europe/Londn"}, "BAD_TIMEZONE"),
            ({"locale": "xx-YY"}, "BAD_LOCALE"),
            ({"large_amount_minor": -5}, "BAD_THRESHOLD"),
            ({"quiet_hours": {"start": 0, "end": 90_000_000}}, "BAD_QUIET_HOURS"),
        ],
    )
    def test_a_consent_the_accounts_stage_could_not_use_is_refused_at_ingest(
        self, changes: dict[str, Any], reason: str
    ) -> None:
        """Finding 5: what later code relies on is checked against real data at ingest."""
        rejected = check_consent(BANK, ACCOUNT, consent(**changes))  # type: ignore[arg-type]  # test record
        assert rejected is not None and rejected.reason == reason

    def test_a_record_that_raises_in_the_accounts_stage_is_dead_lettered(
        self, codec: Codec, tmp_path: Path
    ) -> None:
        """Finding 5, second line: the accounts stage's spec dead-letters a record its
        handler raised on, as PROCESSING_ERROR with its bank topic's coordinates (the
        stage itself is tested on a broker: tests/integration/test_stage.py)."""
        account = Account(codec, tmp_path)
        spec = account.handler.spec()
        assert spec.on_error is not None
        headers = [
            ("kind", b"transaction"),
            ("source-topic", b"bank.banque-alpine.transactions.v1"),
            ("source-partition", b"2"),
            ("source-offset", b"41"),
        ]
        read = ConsumerRecord(STREAM, 0, 9, BOOKED, 0, KEY, b"\x00", None, 0, 0, headers)
        (letter,) = spec.on_error(read, KeyError("boom"), account.store)
        hashed = account.handler.records.account_hash(KEY)
        assert (letter.topic, letter.key) == (catalog.DLQ, hashed.encode())
        assert dict(letter.headers) == {
            "reason": b"PROCESSING_ERROR",
            "error": b"KeyError in the accounts stage",
            "source-topic": b"bank.banque-alpine.transactions.v1",
            "source-partition": b"2",
            "source-offset": b"41",
            "sealed": b"aes-256-gcm",
        }
        data_key = account.handler.sealer.data_key(account.store, hashed, BOOKED)
        assert crypto.open_sealed(data_key, letter.value or b"", hashed) == b"\x00"

    def test_a_scan_goes_past_an_account_it_cannot_scan(self, codec: Codec, tmp_path: Path) -> None:
        """Finding 5: a stored consent whose time zone cannot be loaded (written before the
        check) is dead-lettered by the scan, and the other accounts of the partition are
        still scanned: their digests come."""
        account = Account(codec, tmp_path)
        account.consent()
        account.transaction()
        broken_key = f"{BANK}:FR76000".encode()  # sorts before KEY: scanned first
        broken = consent(timezone="Mars/Olympus", account_id="FR76000")
        save_held(account.store, broken_key, Held(broken))  # type: ignore[arg-type]  # test record
        save_state(account.store, broken_key, accounts.new_state())
        account.store.commit(99)
        emits = account.tick(AFTER_MIDNIGHT)
        assert [n["kind"] for n in account.notifications(emits)] == ["DAILY_DIGEST"]
        letters = [e for e in emits if e.topic == catalog.DLQ]
        assert [(e.key, dict(e.headers)["reason"]) for e in letters] == [
            (broken_key, b"PROCESSING_ERROR")
        ]


class TestMoneyAndCurrencies:
    def test_thb_and_xof_are_currencies(self) -> None:
        """Finding 6: ISO 4217 from CLDR, not a hand list of 36: THB and XOF are accepted."""
        arrived = samples.BOOKED_AT + 60_000
        for currency in ("THB", "XOF", "XAF"):
            tx = {**samples.TRANSACTION, "currency": currency}
            assert check_transaction(BANK, ACCOUNT.encode(), tx, arrived) is None  # type: ignore[arg-type]  # test record

    def test_a_xof_amount_has_no_decimals(self, codec: Codec, tmp_path: Path) -> None:
        """Finding 6: 150 000 XOF reads as 150 000, not 1 500,00."""
        account = Account(codec, tmp_path)
        account.consent(permissions=["TRANSACTIONS"])
        (n,) = account.notifications(
            account.transaction(amount_minor=-150_000, currency="XOF", merchant_name=None)
        )
        assert n["text"] == "Paiement de 150\u202f000\u00a0F\u202fCFA"


class TestHashKey:
    def test_the_worker_refuses_the_development_key(self) -> None:
        """Finding 7: without a key of its own (or the development setting), the pipeline
        worker does not start, and says which variable to set."""
        from streams import worker

        with pytest.raises(SettingsError, match="PASSERELLE_HASH_KEY"):
            worker.pipeline_app(Settings())

    def test_the_key_may_come_from_a_secret_file(self, tmp_path: Path) -> None:
        """PASSERELLE_HASH_KEY_FILE names a mounted secret; its content is the key."""
        secret = tmp_path / "hash-key"
        secret.write_text("s3cret-key\n")
        settings = Settings.from_env({"PASSERELLE_HASH_KEY_FILE": str(secret)})
        assert not settings.hash_key_is_default and settings.hash_key == "s3cret-key"
