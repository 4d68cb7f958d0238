"""The conversation without a broker: intents, the psid stage's routing, and the accounts
stage's answers, each on the stages' own handlers and a real partition store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams import catalog, model, stream
from streams.agents import ingest
from streams.agents.accounts import Accounts
from streams.agents.conversation import HELP_EVERY_MS, PSIDS_TABLE, RATE_BUDGET, Conversation
from streams.catalog import Catalog
from streams.codec import Codec
from streams.core.spec import Emit
from streams.core.store import PartitionStore
from streams.crypto import Keyring
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules.intents import PAYLOADS, parse
from streams.rules.replies import Asked
from streams.settings import Settings
from streams.tools import dlq
from tests import samples
from tests.unit.test_consent_paths import BOOKED, KEY, Account

PSID = samples.CONSENT["psid"]
DAY_MS = 86_400_000

# The intent table: what customers write (French and English) and what it asks.
INTENTS = [
    ("solde ?", "BALANCE"),
    ("Quel est mon solde", "BALANCE"),
    ("balance", "BALANCE"),
    ("Mon SOLDE !", "BALANCE"),
    ("dernières opérations", "RECENT"),
    ("last transactions", "RECENT"),
    ("historique", "RECENT"),
    ("ce mois", "MONTH"),
    ("this month", "MONTH"),
    ("résumé", "MONTH"),
    ("bilan du mois", "MONTH"),
    ("STOP", "STOP"),
    ("arrêter", "STOP"),
    ("unsubscribe", "STOP"),
    ("pause", "PAUSE"),
    ("reprendre", "RESUME"),
    ("resume", "RESUME"),
    ("discret", "DISCREET_ON"),
    ("mode discret", "DISCREET_ON"),
    ("discreet on", "DISCREET_ON"),
    ("discret off", "DISCREET_OFF"),
    ("discreet off", "DISCREET_OFF"),
    ("aide", "HELP"),
    ("help", "HELP"),
    ("?", "HELP"),
    ("stop solde", "STOP"),  # a control before a question
    ("quelle belle journée", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "intent"), INTENTS)
def test_a_message_asks_what_the_intent_table_says(text: str, intent: str | None) -> None:
    assert parse(text) == intent


def test_our_payloads_name_their_intent_and_nothing_else_is_a_payload() -> None:
    """Quick replies and postbacks are exact; an unknown payload falls back to the text."""
    assert all(parse(None, payload) == intent for payload, intent in PAYLOADS.items())
    assert parse("solde", "SOMETHING_ELSE") == "BALANCE"
    assert parse(None, "passerelle_balance") is None


# -- the conversation stage -----------------------------------------------------------


class Talk:
    """One partition of the psid stream through the conversation handler."""

    def __init__(self, codec: Codec, tmp_path: Path) -> None:
        self.codec = codec
        self.store = PartitionStore(tmp_path / "psids")
        self.metrics = Metrics(CollectorRegistry())
        self.cat = Catalog(Settings())
        accounts = Accounts(
            codec, KeyedHasher("k", "k0"), self.cat, self.metrics, Keyring.development()
        )
        self.handler = Conversation(self.cat, self.metrics, accounts.records.message)
        self.ingest = ingest.spec(
            codec,
            self.cat.account_stream().name,
            self.metrics,
            psid_stream=self.cat.psid_stream().name,
        )
        self.passed: list[bytes] = []
        self.offset = 0

    def handle(self, value: bytes | None, kind: bytes, now: int, psid: str = PSID) -> list[Emit]:
        self.offset += 1
        headers = [("kind", kind)]
        record: Any = ConsumerRecord(
            self.cat.psid_stream().name,
            0,
            self.offset,
            now,
            0,
            psid.encode(),
            value,
            None,
            0,
            0,
            headers,
        )
        emits = self.handler.handle(record, self.store)
        self.store.commit(self.offset)
        return emits

    def link(self, account: str, locale: str = "fr-FR", psid: str = PSID) -> None:
        value = stream.encode_link(stream.Link(account, locale))
        assert self.handle(value, stream.KIND_LINK, BOOKED, psid) == []

    def unlink(self, account: str, psid: str = PSID) -> None:
        assert self.handle(account.encode(), stream.KIND_UNLINK, BOOKED, psid) == []

    def say(
        self, text: str | None, now: int = BOOKED, psid: str = PSID, **extra: Any
    ) -> list[Emit]:
        message = {
            "mid": f"m-{self.offset}",
            "psid": psid,
            "page_id": "page-1",
            "text": text,
            "payload": None,
            "sent_at": now,
            **extra,
        }
        frame = self.codec.encode(model.INBOUND_MESSAGE, message)
        record: Any = ConsumerRecord(
            catalog.INBOUND, 0, self.offset, now, 0, psid.encode(), frame, None, 0, 0, []
        )
        (passed,) = self.ingest.handler(record, self.store)  # as ingest passes it on
        assert passed.topic == self.cat.psid_stream().name and passed.value is not None
        self.passed.append(passed.value)
        return self.handle(passed.value, stream.KIND_INBOUND, now, psid)

    def replies(self, emits: list[Emit]) -> list[dict[str, Any]]:
        return [
            self.codec.decode(model.NOTIFICATION, e.value or b"")
            for e in emits
            if e.topic == catalog.NOTIFICATIONS
        ]

    def count(self, outcome: str) -> float:
        return float(self.metrics.inbound.labels(page="page-1", outcome=outcome)._value.get())


def test_a_question_becomes_one_request_per_linked_account(codec: Codec, tmp_path: Path) -> None:
    """A psid with accounts at two banks asks once; each account gets the same request,
    in key order, on the per-account stream, and nothing is answered here."""
    talk = Talk(codec, tmp_path)
    talk.link("banque-zephyr:ACC-2", "en-GB")
    talk.link("banque-alpine:ACC-1")
    emits = talk.say("solde ?")
    assert [(e.topic, e.key) for e in emits] == [
        (talk.cat.account_stream().name, b"banque-alpine:ACC-1"),
        (talk.cat.account_stream().name, b"banque-zephyr:ACC-2"),
    ]
    read = stream.read(
        ConsumerRecord(
            "t", 0, 0, BOOKED, 0, emits[0].key, emits[0].value, None, 0, 0, list(emits[0].headers)
        )
    )
    assert isinstance(read, stream.Request)
    assert read.asked == Asked("m-2", PSID, "page-1", "BALANCE", BOOKED, "fr-FR")
    assert talk.count("answered") == 1


def test_an_unknown_text_gets_help_once_an_hour_and_never_its_echo(
    codec: Codec, tmp_path: Path
) -> None:
    talk = Talk(codec, tmp_path)
    talk.link("banque-alpine:ACC-1", "en-GB")
    first = talk.replies(talk.say("tell me about zorglub"))
    assert len(first) == 1 and first[0]["kind"] == "RESPONSE"
    assert "zorglub" not in first[0]["text"] and first[0]["quick_replies"]
    assert first[0]["text"].startswith("You can ask")
    assert talk.say("zorglub again", BOOKED + 60_000) == []
    assert len(talk.replies(talk.say("zorglub later", BOOKED + HELP_EVERY_MS))) == 1
    assert talk.count("rate_limited") == 1 and talk.count("answered") == 2


def test_ingest_passes_on_what_a_message_asks_never_what_it_says(
    codec: Codec, tmp_path: Path
) -> None:
    talk = Talk(codec, tmp_path)
    talk.link("banque-alpine:ACC-1")
    talk.say("mon solde s'il vous plaît, zorglub")
    (passed,) = talk.passed
    assert b"zorglub" not in passed and b"plait" not in passed
    assert json.loads(passed) == {
        "mid": "m-1",
        "page_id": "page-1",
        "intent": "BALANCE",
        "sent_at": BOOKED,
    }


def test_a_psid_no_consent_names_gets_one_reply_a_day(codec: Codec, tmp_path: Path) -> None:
    talk = Talk(codec, tmp_path)
    assert len(talk.replies(talk.say("solde", psid="stranger"))) == 1
    assert talk.say("solde", BOOKED + 1000, psid="stranger") == []
    assert len(talk.replies(talk.say("solde", BOOKED + DAY_MS, psid="stranger"))) == 1
    assert talk.count("refused") == 3
    reply = talk.replies(talk.say("allo", BOOKED + DAY_MS, psid="other"))[0]
    assert reply["bank_id"] == "" and all(v is None for v in reply["data"].values())


def test_a_flood_from_one_psid_is_counted_not_answered(codec: Codec, tmp_path: Path) -> None:
    talk = Talk(codec, tmp_path)
    talk.link("banque-alpine:ACC-1")
    sent = [talk.say("solde", BOOKED + i) for i in range(RATE_BUDGET + 5)]
    assert all(sent[:RATE_BUDGET]) and not any(sent[RATE_BUDGET:])
    assert talk.count("rate_limited") == 5
    assert talk.say("solde", BOOKED + 60_000)  # a new window


def test_unlinking_the_last_account_forgets_the_psid(codec: Codec, tmp_path: Path) -> None:
    talk = Talk(codec, tmp_path)
    talk.link("banque-alpine:ACC-1")
    talk.say("solde")
    assert talk.store.get(PSIDS_TABLE, PSID.encode()) is not None
    talk.unlink("banque-alpine:ACC-1")
    assert talk.store.get(PSIDS_TABLE, PSID.encode()) is None


# -- the accounts stage's answers -------------------------------------------------------


def ask(account: Account, intent: str, psid: str = PSID, now: int = BOOKED + 60_000) -> list[Any]:
    asked = Asked(f"mid-{account.offset}", psid, "page-1", intent, now, "fr-FR")  # type: ignore[arg-type]
    return account.handle(KEY, stream.encode_request(asked), stream.KIND_REQUEST, now)


def test_a_balance_is_answered_from_the_accounts_state(codec: Codec, tmp_path: Path) -> None:
    account = Account(codec, tmp_path)
    account.consent()
    account.transaction(balance_after_minor=123456)
    (answer,) = account.notifications(ask(account, "BALANCE"))
    assert answer["kind"] == "RESPONSE" and answer["envelope"]["messaging_type"] == "RESPONSE"
    assert answer["data"]["balance_minor"] == 123456 and "1\u202f234,56\u00a0€" in answer["text"]
    assert answer["expires_at"] == BOOKED + 60_000 + DAY_MS
    again = account.notifications(ask(account, "BALANCE"))
    assert again[0]["notification_id"] != answer["notification_id"]  # another mid


def test_a_question_the_consent_does_not_cover_gets_a_refusal_without_data(
    codec: Codec, tmp_path: Path
) -> None:
    account = Account(codec, tmp_path)
    account.consent(permissions=["TRANSACTIONS"])
    account.transaction(balance_after_minor=123456)
    (refusal,) = account.notifications(ask(account, "BALANCE"))
    assert all(refusal["data"][f] is None for f in refusal["data"] if f != "account_masked")
    assert "ne partage pas son solde" in refusal["text"] and "1" not in refusal["text"].replace(
        "0189", ""
    )


def test_another_psid_gets_a_refusal_about_the_account(codec: Codec, tmp_path: Path) -> None:
    account = Account(codec, tmp_path)
    account.consent()
    account.transaction(balance_after_minor=123456)
    (refusal,) = account.notifications(ask(account, "BALANCE", psid="someone-else"))
    assert refusal["psid"] == "someone-else" and refusal["data"]["balance_minor"] is None
    assert refusal["consent_id"] == ""


def test_stop_mutes_asks_the_bank_and_confirms_once(codec: Codec, tmp_path: Path) -> None:
    """STOP: a withdrawal request for the consent, one confirmation, and the next
    transaction is counted but withheld (MUTED_BY_PSU); RESUME cannot lift it."""
    account = Account(codec, tmp_path)
    account.consent()
    emits = ask(account, "STOP")
    (request,) = [e for e in emits if e.topic == catalog.REQUESTS]
    assert request.key == KEY
    withdrawal = codec.decode(model.WITHDRAWAL_REQUEST, request.value)
    assert withdrawal == {
        "consent_id": samples.CONSENT["consent_id"],
        "bank_id": samples.CONSENT["bank_id"],
        "asked_at": BOOKED + 60_000,
        "channel": "MESSENGER",
    }
    (confirmed,) = account.notifications(emits)
    assert "plus aucune notification" in confirmed["text"]
    after = account.transaction(now=BOOKED + 120_000, transaction_id="tx-after-stop")
    assert account.notifications(after) == []
    ((_, decision),) = account.audit(after)
    assert (decision["outcome"], decision["reason"]) == ("WITHHELD", "MUTED_BY_PSU")
    (still,) = account.notifications(ask(account, "RESUME", now=BOOKED + 180_000))
    assert "arrêtées" in still["text"]
    assert (
        account.notifications(account.transaction(now=BOOKED + 240_000, transaction_id="tx-2"))
        == []
    )
    (balance,) = account.notifications(ask(account, "BALANCE", now=BOOKED + 300_000))
    assert balance["data"]["balance_minor"] is not None  # asking still works while stopped


def test_pause_then_resume_brings_notifications_back(codec: Codec, tmp_path: Path) -> None:
    account = Account(codec, tmp_path)
    account.consent()
    ask(account, "PAUSE")
    assert (
        account.notifications(account.transaction(now=BOOKED + 120_000, transaction_id="t-1")) == []
    )
    ask(account, "RESUME", now=BOOKED + 180_000)
    kinds = [
        n["kind"]
        for n in account.notifications(
            account.transaction(now=BOOKED + 240_000, transaction_id="t-2")
        )
    ]
    assert "TRANSACTION" in kinds


def test_discreet_texts_name_the_account_and_nothing_else(codec: Codec, tmp_path: Path) -> None:
    account = Account(codec, tmp_path)
    account.consent()
    ask(account, "DISCREET_ON")
    sent = account.notifications(account.transaction(now=BOOKED + 120_000, transaction_id="t-1"))
    assert {n["kind"]: n["text"] for n in sent} == {
        "TRANSACTION": "Nouvelle opération sur le compte •••• 0189",
        "LARGE_TRANSACTION": "Opération importante sur le compte •••• 0189",
    }
    assert all(n["data"][f] is None for n in sent for f in n["data"] if f != "account_masked")
    (answer,) = account.notifications(ask(account, "BALANCE", now=BOOKED + 180_000))
    assert answer["text"].startswith("Mode discret") and answer["data"]["balance_minor"] is None


def test_an_answer_after_the_24_hour_window_is_not_written(codec: Codec, tmp_path: Path) -> None:
    account = Account(codec, tmp_path)
    account.consent()
    asked = Asked("mid-late", PSID, "page-1", "BALANCE", BOOKED, "fr-FR")
    late = account.handle(KEY, stream.encode_request(asked), stream.KIND_REQUEST, BOOKED + DAY_MS)
    assert late == []


def test_a_consent_change_links_and_unlinks_its_psid(codec: Codec, tmp_path: Path) -> None:
    """The held consent's psid is linked; a replacement unlinks the old psid first."""
    account = Account(codec, tmp_path)
    links = account.consent()
    assert [(dict(e.headers)["kind"], e.key) for e in links] == [(b"link", PSID.encode())]
    replaced = account.consent(psid="new-psid", consent_id="c-new", updated_at=BOOKED, now=BOOKED)
    psids = [(dict(e.headers)["kind"], e.key) for e in replaced if e.topic.endswith(".psids")]
    assert psids == [(b"unlink", PSID.encode()), (b"link", b"new-psid")]


def test_a_question_written_twice_is_answered_once(codec: Codec, tmp_path: Path) -> None:
    """An at-least-once replay of the conversation writes a request again, later in the
    account's order: the account answers the first copy only."""
    account = Account(codec, tmp_path)
    account.consent()
    asked = Asked("mid-twice", PSID, "page-1", "BALANCE", BOOKED + 60_000, "fr-FR")
    value = stream.encode_request(asked)
    first = account.handle(KEY, value, stream.KIND_REQUEST, BOOKED + 60_000)
    account.transaction(now=BOOKED + 90_000, transaction_id="between")
    again = account.handle(KEY, value, stream.KIND_REQUEST, BOOKED + 120_000)
    assert len(account.notifications(first)) == 1 and again == []


def test_a_message_that_fails_its_checks_is_dead_lettered_without_its_text(
    codec: Codec, tmp_path: Path
) -> None:
    """A message keyed by another psid goes to the DLQ with its reason, coordinates and
    size, never its bytes, and counts under its page."""
    talk = Talk(codec, tmp_path)
    message = {"mid": "m-x", "psid": "someone", "page_id": "page-1", "text": "zorglub 1234"}
    frame = codec.encode(model.INBOUND_MESSAGE, {**message, "payload": None, "sent_at": BOOKED})
    record: Any = ConsumerRecord(catalog.INBOUND, 0, 7, BOOKED, 0, b"other", frame, None, 0, 0, [])
    (dead,) = talk.ingest.handler(record, talk.store)
    headers = dict(dead.headers)
    assert dead.topic == catalog.DLQ and dead.value is None
    assert headers["reason"] == b"KEY_MISMATCH" and headers["size"] == str(len(frame)).encode()
    assert (headers["source-topic"], headers["source-offset"]) == (catalog.INBOUND.encode(), b"7")
    assert talk.count("dlq") == 1 and talk.count("in") == 1
    stored: Any = ConsumerRecord(
        catalog.DLQ, 0, 0, BOOKED, 0, dead.key, dead.value, None, 0, 0, list(dead.headers)
    )
    shown = dlq.letter(stored)  # as `passerelle dlq show` reads it
    assert (shown.bank, shown.reason, shown.size) == ("inbound", "KEY_MISMATCH", len(frame) + 5)


def test_the_last_transactions_name_the_merchant_or_the_category_in_the_customers_words(
    codec: Codec, tmp_path: Path
) -> None:
    account = Account(codec, tmp_path)
    account.consent()
    account.transaction(now=BOOKED, transaction_id="atm", merchant_name=None, channel="ATM")
    account.transaction(now=BOOKED + 1000, transaction_id="shop")
    (answer,) = account.notifications(ask(account, "RECENT"))
    lines = answer["text"].splitlines()
    assert lines[0] == "Dernières opérations sur le compte •••• 0189\u00a0:"
    assert "Boulangerie Pâtissière" in lines[1] and "retrait" in lines[2]
    assert answer["data"]["merchant_name"] == "Boulangerie Pâtissière"  # the latest
