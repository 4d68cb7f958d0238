"""The consent promise on every path: the real accounts handler against an independent model.

Hypothesis generates interleavings, for one account, of consent records (every
status, another consent id or psid, permission and window changes, older
versions arriving late, tombstones, unreadable records), transactions (inside
and outside the windows, PENDING/BOOKED/REVERSED, duplicates, large amounts,
low balances, stale bookings), ticks across local midnights and expiry, and
the customer's requests from the chat (questions and controls, from the
consent's psid or another one). They
run through `Accounts.handle` on a real partition store, without a broker, and
every record it emits is checked against `Model`, written here from DESIGN.md
alone: it imports nothing from `streams.rules` or `streams.agents`.

Planted mutants (at the end) prove that the check can fail: each one is a
known way the promise broke, and hypothesis must find a sequence that shows it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import hypothesis.strategies as st
import pytest
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, Phase, find, given, settings
from prometheus_client import CollectorRegistry

from streams import catalog, crypto
from streams.agents import accounts as accounts_stage
from streams.catalog import Catalog
from streams.codec import Codec
from streams.core.store import PartitionStore
from streams.core.ticks import TICK_KEY, encode_tick
from streams.crypto import KEYS_TABLE, Keyring, decode_key
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules.replies import Asked
from streams.settings import Settings
from streams.stream import KIND_LINK, KIND_REQUEST, KIND_UNREACHABLE, encode_request

BANK, ACCOUNT = "banque-alpine", "FR7630006000011234567890189"
KEY = f"{BANK}:{ACCOUNT}".encode()
HASHER = KeyedHasher("k", "k0")
PSID_STREAM = Catalog(Settings()).psid_stream().name
MASKED = "•••• 0189"
MERCHANT = "Zorglub Market"
T0 = int(dt.datetime(2026, 11, 27, tzinfo=dt.UTC).timestamp() * 1000)
MINUTE, HOUR = 60_000, 3_600_000
ENDING = {"REVOKED_BY_PSU", "EXPIRED", "TERMINATED_BY_TPP"}
# What each kind needs, as DESIGN.md ("Notifications", "One gate for every output") says.
NEEDS = {
    "TRANSACTION": {"TRANSACTIONS"},
    "LARGE_TRANSACTION": {"ALERTS"},
    "LOW_BALANCE": {"ALERTS", "BALANCES"},
    "DAILY_DIGEST": {"SUMMARIES"},
}
DETAIL_FIELDS = ("amount_minor", "merchant_name", "category")
DATA_FIELDS = (*DETAIL_FIELDS, "currency", "balance_minor", "digest")
# What each question needs, as DESIGN.md ("Conversation") says; the rest are controls.
QUESTION_NEEDS = {"BALANCE": "BALANCES", "RECENT": "TRANSACTIONS", "MONTH": "SUMMARIES"}
CONTROLS = ("STOP", "PAUSE", "RESUME", "DISCREET_ON", "DISCREET_OFF")
PUSHED = {"TRANSACTION", "LARGE_TRANSACTION", "LOW_BALANCE", "DAILY_DIGEST"}

# -- the generated sequences ------------------------------------------------------------

hours = st.integers(0, 96).map(lambda h: T0 + h * HOUR)
far = st.integers(5, 30).map(lambda d: T0 + d * 24 * HOUR)
perms = st.sampled_from(["TRANSACTIONS", "BALANCES", "SUMMARIES", "ALERTS"])
consents = st.fixed_dictionaries(
    {
        "consent_id": st.sampled_from(["cns-a"] * 4 + ["cns-b"]),
        "bank_id": st.just(BANK),
        "account_id": st.just(ACCOUNT),
        "psid": st.sampled_from(["psid-1"] * 4 + ["psid-2"]),
        "page_id": st.sampled_from(["page-1"] * 5 + ["page-2"]),
        "status": st.sampled_from(["VALID"] * 6 + ["RECEIVED", "REJECTED", *sorted(ENDING)]),
        "permissions": st.lists(perms, unique=True)
        | st.just(["TRANSACTIONS", "BALANCES", "SUMMARIES", "ALERTS"]),
        "valid_until": st.one_of(hours, far, far, far),
        "transaction_from": st.none() | st.none() | hours,
        "transaction_to": st.none() | st.none() | hours,
        "locale": st.sampled_from(["fr-FR", "en-GB"]),
        "timezone": st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Tokyo"]),
        "quiet_hours": st.none(),
        "large_amount_minor": st.sampled_from([None, 5_000, 100_000]),
        "low_balance_minor": st.sampled_from([None, 1_000, 20_000]),
        "daily_digest": st.booleans(),
        "display": st.sampled_from(["FULL", "FULL", "FULL", "DISCREET"]),
        "updated_at": st.integers(1, 40),  # small: versions collide, older ones arrive late
    }
)


@dataclass(frozen=True)
class Tx:
    ident: str
    status: str
    settles: str | None
    amount: int
    balance: int | None
    age_ms: int  # booked this long before it arrives


transactions = st.builds(
    Tx,
    st.sampled_from([f"tx-{n}" for n in range(6)]),
    st.sampled_from(["BOOKED", "BOOKED", "PENDING", "REVERSED"]),
    st.none() | st.sampled_from([f"tx-{n}" for n in range(6)]),
    st.sampled_from([-120_000, -6_000, -250, 800, 250_000]),
    st.none() | st.sampled_from([500, 15_000, 90_000]),
    st.sampled_from([0, 0, 30 * MINUTE, 5 * HOUR, 20 * HOUR, 3 * 24 * HOUR]),
)
# time passes before each event, a minute at least: often minutes, sometimes hours
steps = st.integers(1, 30).map(lambda m: m * MINUTE) | st.integers(1, 14).map(lambda h: h * HOUR)
a_consent = st.tuples(st.just("consent"), consents)
asks = st.tuples(
    st.sampled_from([*QUESTION_NEEDS, *QUESTION_NEEDS, *CONTROLS]),
    st.sampled_from(["psid-1"] * 4 + ["psid-2"]),
)
PAYLOADS: dict[str, st.SearchStrategy[Any]] = {
    "ask": asks,
    "tx": transactions,
    "tick": st.none(),
    "consent": consents,
    "tombstone": st.none(),
    "unreadable": st.none(),
    "unreachable": st.sampled_from(["cns-a", "cns-b"]),  # a delivery report's consent
}
# Weighted by repetition: mostly transactions and ticks, now and then a consent change.
happenings = st.sampled_from(
    ["tx"] * 6
    + ["tick"] * 4
    + ["consent"] * 2
    + ["ask"] * 2
    + ["tombstone", "unreadable", "unreachable"]
).flatmap(lambda what: st.tuples(st.just(what), PAYLOADS[what]))
# Most runs start from a consent, so that much of each run is under one.
events = st.tuples(
    st.lists(st.tuples(steps, a_consent), max_size=1),
    st.lists(st.tuples(steps, happenings), min_size=4, max_size=40),
).map(lambda parts: parts[0] + parts[1])
Event = tuple[int, tuple[str, Any]]

# -- the independent model --------------------------------------------------------------


@dataclass
class Model:
    """What DESIGN.md promises, for one account: the newest readable consent record is
    held; an ending status, a tombstone, a tick past `valid_until` or a record naming
    another consent or recipient ends it; an unreadable record withholds until a newer
    readable one; state gathered under one consent never outlives it."""

    version: int | None = None
    consent: dict[str, Any] | None = None
    unreadable: bool = False
    activity: dict[str, int] = field(default_factory=dict)  # local date -> transactions
    spent: int = 0  # every debit folded under the consent held, as an upper bound
    ends: list[tuple[str, str, str]] = field(default_factory=list)  # this event's
    muted: str | None = None  # STOP, PAUSE, or UNREACHABLE (a delivery report)
    discreet: bool | None = None  # the customer's DISCREET on or off; None: not chosen

    def end(self, reason: str) -> None:
        assert self.consent is not None
        self.ends.append((self.consent["consent_id"], self.consent["psid"], reason))
        self.consent, self.activity, self.spent = None, {}, 0
        self.muted, self.discreet = None, None

    def shows_discreetly(self) -> bool:
        """The customer's choice in the chat, if any; else the consent's display."""
        if self.discreet is not None:
            return self.discreet
        return self.consent is not None and self.consent["display"] == "DISCREET"

    def control(self, intent: str, psid: str) -> None:
        """A control from `psid`: it counts only from the psid of the consent held."""
        if self.consent is None or self.consent["psid"] != psid:
            return
        if intent == "STOP":
            self.muted = "STOP"
        elif intent in ("PAUSE", "RESUME") and self.muted != "STOP":
            self.muted = "PAUSE" if intent == "PAUSE" else None
        elif intent in ("DISCREET_ON", "DISCREET_OFF"):
            self.discreet = intent == "DISCREET_ON"

    def unreachable(self, consent_id: str) -> None:
        """The delivery worker could not reach the recipient of `consent_id`: the consent
        held, if it is that one, pushes nothing more (a STOP stays a STOP)."""
        if self.consent is not None and self.consent["consent_id"] == consent_id:
            self.muted = self.muted if self.muted == "STOP" else "UNREACHABLE"

    def record(self, update: dict[str, Any]) -> None:
        if self.version is not None and update["updated_at"] <= self.version:
            return  # older than what was seen: ignored (an unreadable mark stays)
        self.version, self.unreadable = update["updated_at"], False
        held = self.consent
        if update["status"] in ENDING:
            if held is not None:
                self.end(update["status"])
            return
        if held is not None and any(
            held[k] != update[k] for k in ("consent_id", "psid", "page_id")
        ):
            self.end("REPLACED")
        self.consent = update

    def tombstone(self) -> None:
        """The authority forgot the account: every version seen is forgotten too."""
        self.unreadable, self.version = False, None
        if self.consent is not None:
            self.end("TOMBSTONE")

    def tick(self, now: int) -> None:
        c = self.consent
        if c is not None and c["status"] == "VALID" and now >= c["valid_until"]:
            self.end("EXPIRED")

    def live(self, now: int) -> dict[str, Any] | None:
        """The consent that lets something out now, if any."""
        c = self.consent
        if self.unreadable or c is None or c["status"] != "VALID" or now >= c["valid_until"]:
            return None
        return c

    @staticmethod
    def covers(c: dict[str, Any], booked: int) -> bool:
        start, end = c["transaction_from"], c["transaction_to"]
        return (
            booked < c["valid_until"]
            and (start is None or booked >= start)
            and (end is None or booked <= end)
        )

    def fold(self, now: int, booked: int, amount: int) -> None:
        """A transaction the account's summary may take in (an upper bound of what it does)."""
        c = self.live(now)
        if c is None or not self.covers(c, booked):
            return
        if not {"TRANSACTIONS", "ALERTS", "SUMMARIES"} & set(c["permissions"]):
            return
        day = dt.datetime.fromtimestamp(booked / 1000, ZoneInfo(c["timezone"])).date()
        self.activity[day.isoformat()] = self.activity.get(day.isoformat(), 0) + 1
        self.spent += abs(amount) if amount < 0 else 0


def check_response(model: Model, n: dict[str, Any], now: int, ask: tuple[str, str]) -> None:
    """An answer in the chat: to the asker only, data only if the consent held now names
    the asker and grants what the question needs, and never while it is discreet."""
    intent, psid = ask
    assert n["psid"] == psid and n["envelope"]["messaging_type"] == "RESPONSE"
    assert n["envelope"]["tag"] is None
    data = n["data"]
    shown = [f for f in DATA_FIELDS if data[f] is not None]
    c = model.live(now)
    needs = QUESTION_NEEDS.get(intent)
    if needs is None or c is None or c["psid"] != psid or needs not in c["permissions"]:
        assert shown == [], f"{intent} answered with {shown} it may not carry"
        assert MERCHANT not in n["text"], "a merchant in a refusal or a confirmation"
        return
    assert n["consent_id"] == c["consent_id"]
    if model.shows_discreetly():
        assert shown == [], f"a discreet account's answer carries {shown}"
        assert MERCHANT not in n["text"]
    allowed = {
        "BALANCE": {"balance_minor", "currency"},
        "RECENT": {*DETAIL_FIELDS, "currency"},
        "MONTH": {"digest", "currency"},
    }[intent]
    assert set(shown) <= allowed, f"{intent} carries {set(shown) - allowed}"
    if intent == "MONTH" and data["digest"] is not None:
        assert data["digest"]["spent_minor"] <= model.spent, "a month counting another's spend"


def check_notification(model: Model, n: dict[str, Any], now: int, booked: int | None) -> None:
    """A notification carrying account data, against the consent held when it was emitted."""
    c = model.live(now)
    assert c is not None, f"{n['kind']} without a valid, readable consent"
    assert model.muted is None, f"{n['kind']} pushed after the customer's {model.muted}"
    if model.shows_discreetly():
        shown = [f for f in DATA_FIELDS if n["data"][f] is not None]
        assert shown == [], f"a discreet {n['kind']} carries {shown}"
        assert MERCHANT not in n["text"]
    assert (n["psid"], n["page_id"], n["consent_id"]) == (c["psid"], c["page_id"], c["consent_id"])
    granted = set(c["permissions"])
    assert NEEDS[n["kind"]] <= granted, f"{n['kind']} without {NEEDS[n['kind']] - granted}"
    data, text = n["data"], n["text"]
    if "TRANSACTIONS" not in granted:
        assert all(data[f] is None for f in DETAIL_FIELDS), "details without TRANSACTIONS"
        assert MERCHANT not in text, "the merchant in a text without TRANSACTIONS"
    if "BALANCES" not in granted:
        assert data["balance_minor"] is None, "the balance without BALANCES"
    if not {"TRANSACTIONS", "BALANCES"} & granted and n["kind"] != "DAILY_DIGEST":
        assert not any(ch.isdigit() for ch in text.replace(MASKED, "")), "an amount in " + text
    if n["kind"] == "DAILY_DIGEST":
        digest = data["digest"]
        assert c["daily_digest"]
        if model.shows_discreetly():
            return  # that the day had activity, nothing more: no figures (checked above)
        assert digest is not None, "a digest without its figures, not discreet"
        assert digest["local_date"] in model.activity, "a digest of a day its consent never saw"
        assert digest["transaction_count"] <= sum(model.activity.values())
        assert digest["spent_minor"] <= model.spent, "a digest counting another consent's spend"
    else:
        assert data["digest"] is None
        assert booked is not None and model.covers(c, booked), "a booking the consent excludes"


# -- running the real handler -----------------------------------------------------------


def record(
    offset: int, now: int, key: bytes, value: bytes | None, kind: bytes | None, *extra: Any
) -> Any:
    headers = [("kind", kind), *extra] if kind else []
    if kind:
        headers += [
            ("source-topic", f"bank.{BANK}.transactions.v1".encode()),
            ("source-partition", b"0"),
            ("source-offset", str(offset).encode()),
        ]
    return ConsumerRecord("passerelle.accounts", 0, offset, now, 0, key, value, None, 0, 0, headers)


def transaction(tx: Tx, now: int) -> dict[str, Any]:
    return {
        "transaction_id": tx.ident,
        "bank_id": BANK,
        "account_id": ACCOUNT,
        "status": tx.status,
        "pending_transaction_id": tx.settles if tx.status == "BOOKED" else None,
        "reversed_transaction_id": tx.settles if tx.status == "REVERSED" else None,
        "amount_minor": tx.amount,
        "currency": "EUR",
        "booked_at": now - tx.age_ms,
        "merchant_name": MERCHANT,
        "mcc": "5411",
        "description": None,
        "balance_after_minor": tx.balance,
        "channel": "CARD",
    }


@contextmanager
def scratch_store() -> Iterator[PartitionStore]:
    folder = Path(tempfile.mkdtemp(prefix="consent-model-", dir=_scratch_root()))
    store = PartitionStore(folder / "p0")
    try:
        yield store
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scans_only_when_due() -> Iterator[None]:
    """The hourly scan (`SCAN_AT_LEAST_EVERY_MS`) off: each expiry must come from the
    accounts' due instants alone, so a write that does not bring the next scan forward
    shows as a late end."""
    kept = accounts_stage.SCAN_AT_LEAST_EVERY_MS
    accounts_stage.SCAN_AT_LEAST_EVERY_MS = 10**15
    try:
        yield
    finally:
        accounts_stage.SCAN_AT_LEAST_EVERY_MS = kept


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


@dataclass
class Tally:
    """How much of the promise one run exercised."""

    notifications: dict[str, int] = field(default_factory=dict)
    ends: int = 0


def check_run(codec: Codec, sequence: list[Event], tally: Tally | None = None) -> None:
    """Run `sequence` through the accounts handler; assert every output against the model."""
    handler = accounts_stage.Accounts(
        codec, HASHER, Catalog(Settings()), Metrics(CollectorRegistry()), Keyring.development()
    )
    model, now = Model(), T0
    letters: list[bytes] = []  # sealed for the account since it was last erased
    with scratch_store() as store, scans_only_when_due():
        for offset, (step, (what, payload)) in enumerate(sequence):
            now += step
            model.ends = []
            booked, ask = None, None
            if what == "ask":
                ask = payload
                asked = Asked(f"mid-{offset}", payload[1], "page-1", payload[0], now, "fr-FR")
                value = encode_request(asked)
                emits = handler.handle(record(offset, now, KEY, value, KIND_REQUEST), store)
                model.control(*payload)
            elif what == "consent":
                value = codec.encode("passerelle.Consent", payload)
                emits = handler.handle(record(offset, now, KEY, value, b"consent"), store)
                model.record(payload)
            elif what == "tombstone":
                emits = handler.handle(record(offset, now, KEY, None, b"consent"), store)
                model.tombstone()
            elif what == "unreachable":
                report = record(offset, now, KEY, payload.encode(), KIND_UNREACHABLE)
                emits = handler.handle(report, store)
                model.unreachable(payload)
            elif what == "unreadable":  # with its dead letter, sealed for the account
                why = (("reason", b"BAD_LOCALE"), ("error", b"locale is not known"))
                marker = record(offset, now, KEY, UNREADABLE, b"consent-unreadable", *why)
                emits = handler.handle(marker, store)
                model.unreadable = True
            elif what == "tx":
                tx = transaction(payload, now)
                booked = tx["booked_at"]
                value = codec.encode("passerelle.Transaction", tx)
                emits = handler.handle(record(offset, now, KEY, value, b"transaction"), store)
                model.fold(now, booked, tx["amount_minor"])
            else:
                emits = handler.handle(record(offset, now, TICK_KEY, encode_tick(now), None), store)
                model.tick(now)
            store.commit(offset + 1)
            letters += [e.value or b"" for e in emits if e.topic == catalog.DLQ]
            emits = [e for e in emits if e.topic != catalog.DLQ or what != "unreadable"]
            check_emits(codec, model, emits, now, booked, tally, ask)
            if model.ends or what == "tombstone":  # the account erased or forgotten
                assert not opens(store, letters), "a dead letter outlives its account's erasure"
                letters = []


UNREADABLE = b"\x00a consent no schema reads"
ACCOUNT_HASH = HASHER.account(*KEY.decode().split(":", 1))


def opens(store: PartitionStore, letters: list[bytes]) -> bool:
    """Whether the data key the store holds for the account opens any of `letters`: what
    an operator with the KEK could read of them (`dlq show --decrypt`)."""
    raw = store.get(KEYS_TABLE, ACCOUNT_HASH.encode())
    if raw is None:
        return False
    key = Keyring.development().unwrap(decode_key(raw)[0], ACCOUNT_HASH)
    for letter in letters:
        try:
            assert crypto.open_sealed(key, letter, ACCOUNT_HASH) == UNREADABLE
            return True
        except crypto.Unreadable:
            pass
    return False


def check_emits(
    codec: Codec,
    model: Model,
    emits: list[Any],
    now: int,
    booked: int | None,
    tally: Tally | None,
    ask: tuple[str, str] | None = None,
) -> None:
    receipts, told, unlinked = [], [], []
    disclosed: list[tuple[str, str, str, str, list[str]]] = []
    sent: list[tuple[str, str, str, str, list[str]]] = []
    for emit in emits:
        assert emit.topic != catalog.DLQ, "the handler dead-lettered a record of the run"
        if emit.topic == PSID_STREAM:
            kind = dict(emit.headers)["kind"]
            if kind == KIND_LINK:  # the psid that may ask is the held consent's
                assert model.consent is not None and emit.key == model.consent["psid"].encode()
            else:
                unlinked.append(emit.key.decode())
            continue
        if emit.topic == catalog.REQUESTS:
            assert ask == ("STOP", model.consent["psid"] if model.consent else None)
            continue
        if emit.topic == catalog.AUDIT:
            subject, audit = codec.decode_any(emit.value)
            if subject == "passerelle.ErasureReceipt":
                receipts.append((audit["consent_id"], audit["reason"]))
            outputs = [audit] if subject == "passerelle.Disclosure" else audit.get("outputs", [])
            for out in outputs:  # a Disclosure, or a Decision's notifications
                assert emit.key == HASHER.account(*KEY.decode().split(":", 1)).encode()
                consent_id = out.get("consent_id", audit["consent_id"])
                who = (out["notification_id"], out["kind"], consent_id)
                disclosed.append((*who, out["psid_hash"], out["fields"]))
            continue
        n = codec.decode("passerelle.Notification", emit.value)
        carried = [f for f, v in n["data"].items() if v is not None]
        sent.append(
            (n["notification_id"], n["kind"], n["consent_id"], HASHER.psid(n["psid"]), carried)
        )
        if tally is not None:
            tally.notifications[n["kind"]] = tally.notifications.get(n["kind"], 0) + 1
        if n["kind"] == "RESPONSE":
            assert ask is not None, "a RESPONSE nobody asked for"
            check_response(model, n, now, ask)
        elif n["kind"] == "CONSENT_ENDED":
            told.append((n["consent_id"], n["psid"]))
            assert all(n["data"][f] is None for f in (*DETAIL_FIELDS, "balance_minor", "digest"))
        else:
            check_notification(model, n, now, booked)
    assert disclosed == sent, "each notification, and only it, disclosed on the audit trail"
    assert receipts == [(c, reason) for c, _, reason in model.ends], "one receipt per end"
    assert told == [(c, psid) for c, psid, reason in model.ends if reason != "TOMBSTONE"]
    assert unlinked == [psid for _, psid, _ in model.ends], "an ended consent's psid unlinked"
    if ask is not None:
        assert sum(1 for e in emits if e.topic == catalog.NOTIFICATIONS) == 1, "one answer"
    if tally is not None:
        tally.ends += len(model.ends)


class TestConsentModel:
    @given(events)
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_every_output_is_one_the_consent_held_then_allows(
        self, codec: Codec, sequence: list[Event]
    ) -> None:
        """Whatever the interleaving, every notification goes to the psid of a VALID,
        readable, unexpired consent with the permission its kind needs, carries no field
        the permissions do not unlock, a digest holds only its consent's activity, and
        every ended consent gets exactly one receipt and one CONSENT_ENDED."""
        check_run(codec, sequence)

    def test_the_generated_runs_reach_every_kind_and_end(self, codec: Codec) -> None:
        """The strategy is not vacuous: over a fixed sample, every kind is emitted and
        consents end for every reason."""
        tally = Tally()
        reasons: set[str] = set()

        @given(events)
        @settings(max_examples=600, deadline=None, database=None, derandomize=True)
        def sample(sequence: list[Event]) -> None:
            check_run(codec, sequence, tally)
            model = Model()
            for _, (what, payload) in sequence:
                if what == "consent":
                    model.record(payload)
                    reasons.update(r for *_, r in model.ends)
                    model.ends = []

        sample()
        kinds = {"TRANSACTION", "LARGE_TRANSACTION", "LOW_BALANCE", "DAILY_DIGEST"}
        assert kinds | {"CONSENT_ENDED", "RESPONSE"} <= tally.notifications.keys(), tally
        assert {"REPLACED", "REVOKED_BY_PSU"} <= reasons and tally.ends > 0


# -- planted mutants: each must make the model check fail --------------------------------


def _digest_without_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests checked for SUMMARIES and daily_digest, never for the status (finding 1)."""
    from streams.rules import outputs

    real = outputs.release

    def release(kind: Any, held: Any, now: int, booked_at: int | None = None, **asked: Any) -> Any:
        c = held.consent
        if kind == "DAILY_DIGEST" and c and "SUMMARIES" in c["permissions"] and c["daily_digest"]:
            return outputs.Release(c, outputs.ALWAYS | outputs.DIGEST_FIELDS)
        return real(kind, held, now, booked_at, **asked)

    monkeypatch.setattr(accounts_stage, "release", release)


def _inherited_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another consent id or psid applied as an update of the one held (finding 2)."""
    from streams.rules import consent

    monkeypatch.setattr(consent, "same_consent", lambda a, b: True)


def _fail_open_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable consent record changes nothing: the previous one goes on (finding 3)."""
    from streams.rules.consent import Change

    monkeypatch.setattr(accounts_stage, "mark_unreadable", lambda held: Change(held, "ignored"))


def _alerts_with_details(monkeypatch: pytest.MonkeyPatch) -> None:
    """ALERTS unlocks the amount and the merchant (finding 4)."""
    from streams.rules import outputs

    detailed = frozenset({"amount_minor", "currency", "merchant_name", "category"})
    monkeypatch.setitem(outputs.UNLOCKS, "ALERTS", detailed)


def _answer_to_anyone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer released to whoever asked, not only to the consent's psid."""
    from streams.agents import answers
    from streams.rules import outputs

    def release(kind: Any, held: Any, now: int, booked_at: Any = None, **asked: Any) -> Any:
        to = held.consent["psid"] if held.consent else None
        return outputs.release(kind, held, now, booked_at, asks=asked.get("asks"), to=to)

    monkeypatch.setattr(answers, "release", release)


def _answer_without_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer released whatever the question needs (BALANCE without BALANCES)."""
    from streams.agents import answers
    from streams.rules import outputs

    def release(kind: Any, held: Any, now: int, booked_at: Any = None, **asked: Any) -> Any:
        return outputs.release(kind, held, now, booked_at, to=asked.get("to"))

    monkeypatch.setattr(answers, "release", release)


def _stop_does_not_mute(monkeypatch: pytest.MonkeyPatch) -> None:
    """STOP and PAUSE are confirmed but the gate pushes on."""
    from streams.rules import outputs

    monkeypatch.setattr(outputs, "MUTABLE", frozenset())


def _discreet_shows_amounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """DISCREET is kept but the gate unlocks the fields as before."""
    from streams.agents import answers
    from streams.rules import consent

    real = consent.choose
    monkeypatch.setattr(answers, "choose", lambda held, muted, _: real(held, muted, False))


def _consent_display_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consent's DISCREET display is read and kept, but only the chat's choice counts."""
    from streams.rules import consent

    chat_only = property(lambda held: bool(held.discreet))
    monkeypatch.setattr(consent.Held, "shows_discreetly", chat_only)


def _unreachable_does_not_mute(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery report that the recipient blocked the Page is read and ignored."""
    from streams.agents import answers
    from streams.rules.consent import Change

    monkeypatch.setattr(answers, "unreachable", lambda held, _: Change(held, "ignored"))


def _revocation_keeps_no_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ending forgets the account as a tombstone does: a late older VALID revives it."""
    from streams.agents import accounts as stage
    from streams.rules import consent

    real = consent.apply_update

    def apply_update(held: Any, update: Any) -> Any:
        change = real(held, update)
        if change.held.ended is not None and change.held.consent is None:
            return dataclasses.replace(change, held=consent.Held())
        return change

    monkeypatch.setattr(stage, "apply_update", apply_update)


def _digest_not_disclosed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daily digest written without its Disclosure: an access request would miss it."""
    from streams.agents.records import Records

    real = Records.notification

    def notification(self: Records, key: bytes, n: Any) -> Any:
        emits = real(self, key, n)
        return emits[:1] if n["kind"] == "DAILY_DIGEST" else emits

    monkeypatch.setattr(Records, "notification", notification)


def _alert_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction's Decision lists its TRANSACTION notification but not its alerts."""
    from streams.agents.records import Records

    real: Any = Records.decision

    def decision(self: Records, *args: Any) -> Any:
        *head, outputs = args if len(args) == 7 else (*args, ())
        kept = tuple(n for n in outputs if n["kind"] == "TRANSACTION")
        return real(self, *head, kept)

    monkeypatch.setattr(Records, "decision", decision)


def _erasure_keeps_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """An erasure that deletes the state but keeps the account's data key: its dead
    letters stay readable to whoever holds the KEK."""
    from streams.agents.sealing import Sealer

    monkeypatch.setattr(Sealer, "shred", lambda self, store, key: None)


def _consent_write_keeps_the_next_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consent written without bringing the partition's next scan forward: one that
    expires before the scan already planned ends late."""
    from streams.agents import stored

    monkeypatch.setattr(stored, "next_due", lambda held, state: None)


MUTANTS = [
    _digest_without_status,
    _inherited_state,
    _fail_open_unreadable,
    _alerts_with_details,
    _answer_to_anyone,
    _answer_without_permission,
    _stop_does_not_mute,
    _discreet_shows_amounts,
    _unreachable_does_not_mute,
    _consent_display_ignored,
    _revocation_keeps_no_marker,
    _digest_not_disclosed,
    _alert_not_listed,
    _erasure_keeps_the_key,
    _consent_write_keeps_the_next_scan,
]


class TestMutants:
    @pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.__name__.strip("_"))
    def test_the_model_check_catches_the_planted_mutant(
        self, codec: Codec, monkeypatch: pytest.MonkeyPatch, mutant: Any
    ) -> None:
        """With the mutant planted, hypothesis finds a sequence the model check rejects."""
        mutant(monkeypatch)

        def violates(sequence: list[Event]) -> bool:
            try:
                check_run(codec, sequence)
            except AssertionError as failed:
                print(f"{mutant.__name__}: {str(failed).splitlines()[0]}")
                return True
            return False

        found = find(
            events,
            violates,
            settings=settings(
                max_examples=20_000,
                deadline=None,
                database=None,
                derandomize=True,  # the same search every run: found once, found always
                phases=[Phase.generate],  # the first sequence that shows it; no shrinking
                suppress_health_check=list(HealthCheck),
            ),
        )
        assert violates(found)
