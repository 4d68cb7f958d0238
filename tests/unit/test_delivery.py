"""The delivery worker's rules and keepers, without a broker or an API.

Each rule is checked against an independent statement of it; the mutants at the
end are the rules with one line wrong, and each must fail a check here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import model
from streams.rules import consent as consent_rules
from streams.rules import delivery as rules
from streams.rules.consent import Held
from streams.rules.controls import help_reply
from streams.rules.outputs import release
from streams.rules.replies import Asked, To
from streams.tools.delivered import Journal, Offsets
from tests import samples

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "contracts" / "send-api.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
NOW = samples.BOOKED_AT


def notification(**changes: Any) -> model.Notification:
    n = copy.deepcopy(samples.NOTIFICATION)
    n.update(changes)  # type: ignore[typeddict-item]  # test data
    return n


ENVELOPES: list[tuple[model.DeliveryEnvelope, dict[str, Any]]] = [
    (
        {
            "messaging_type": "MESSAGE_TAG",
            "tag": "POST_PURCHASE_UPDATE",
            "silent": False,
            "recurring": False,
        },
        {
            "messaging_type": "MESSAGE_TAG",
            "tag": "POST_PURCHASE_UPDATE",
            "notification_type": "REGULAR",
        },
    ),
    (
        {
            "messaging_type": "MESSAGE_TAG",
            "tag": "ACCOUNT_UPDATE",
            "silent": True,
            "recurring": False,
        },
        {
            "messaging_type": "MESSAGE_TAG",
            "tag": "ACCOUNT_UPDATE",
            "notification_type": "SILENT_PUSH",
        },
    ),
    (
        {"messaging_type": "UPDATE", "tag": None, "silent": False, "recurring": True},
        {"messaging_type": "UPDATE", "notification_type": "REGULAR"},
    ),
    (
        {"messaging_type": "RESPONSE", "tag": None, "silent": False, "recurring": False},
        {"messaging_type": "RESPONSE", "notification_type": "REGULAR"},
    ),
]


class TestTheRequest:
    @pytest.mark.parametrize(("envelope", "expected"), ENVELOPES)
    def test_each_envelope_maps_to_the_send_api_fields_exactly(
        self, envelope: model.DeliveryEnvelope, expected: dict[str, Any]
    ) -> None:
        """The envelope gives messaging_type, a tag only for MESSAGE_TAG, and SILENT_PUSH
        inside quiet hours; the body is valid for the Send API's schema."""
        body = rules.send_request(notification(envelope=envelope))
        assert {k: body[k] for k in body if k not in ("recipient", "message")} == expected
        assert body["recipient"] == {"id": samples.NOTIFICATION["psid"]}
        assert body["message"] == {"text": samples.NOTIFICATION["text"]}
        assert list(VALIDATOR.iter_errors(body)) == []

    def test_golden_body_of_a_transaction(self) -> None:
        """The bytes the worker posts for the sample transaction (json.dumps, sorted)."""
        body = json.dumps(rules.send_request(samples.NOTIFICATION), sort_keys=True)
        assert body == (
            '{"message": {"text": "Paiement de 1 234,56 \\u20ac chez Boulangerie P\\u00e2tissi'
            '\\u00e8re"}, "messaging_type": "MESSAGE_TAG", "notification_type": "REGULAR", '
            '"recipient": {"id": "24871234567890123"}, "tag": "POST_PURCHASE_UPDATE"}'
        )

    def test_quick_replies_become_text_quick_replies(self) -> None:
        """A HELP answer's choices are sent as text quick replies, valid for the schema."""
        asked = Asked("m-1", "psid-1", "page-1", "HELP", NOW, "fr-FR")
        reply = help_reply(asked, To("", "", "", "", "fr-FR"), NOW)
        body = rules.send_request(reply)
        replies = body["message"]["quick_replies"]
        assert [r["payload"] for r in replies] == [
            q["payload"] for q in reply["quick_replies"] or []
        ]
        assert {r["content_type"] for r in replies} == {"text"}
        assert list(VALIDATOR.iter_errors(body)) == []

    def test_the_schema_refuses_a_tag_without_message_tag_and_a_missing_tag(self) -> None:
        """The contract's schema can fail: a tag on UPDATE, or MESSAGE_TAG without a tag."""
        body = rules.send_request(notification())
        wrong = {**body, "messaging_type": "UPDATE"}
        assert list(VALIDATOR.iter_errors(wrong))
        untagged = {k: v for k, v in body.items() if k != "tag"}
        assert list(VALIDATOR.iter_errors(untagged))


def api_error(code: int, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": "x", "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


ANSWERS: list[tuple[int, Any, str, str | None]] = [
    (200, {"recipient_id": "p", "message_id": "m_1"}, "done", "DELIVERED"),
    (400, api_error(10, 2018108), "done", "BLOCKED"),
    (400, api_error(100, 2018001), "done", "INVALID_RECIPIENT"),
    (400, api_error(551, 1545041), "done", "UNAVAILABLE"),
    (400, api_error(10, 2018278), "done", "OUTSIDE_WINDOW"),
    (400, api_error(10, 2018065), "done", "OUTSIDE_WINDOW"),
    (400, api_error(190), "stop_page", "PAGE_STOPPED"),
    (401, None, "stop_page", "PAGE_STOPPED"),
    (400, api_error(613), "throttle", None),
    (400, api_error(4, 2018022), "throttle", None),
    (429, None, "throttle", None),
    (500, api_error(1200), "retry", None),
    (503, None, "retry", None),
    (400, api_error(100), "retry", None),  # an unknown refusal: tried again, then dead
    (200, {}, "retry", None),  # a success without a message id is not a delivery
]


@pytest.mark.parametrize(("status", "body", "action", "outcome"), ANSWERS)
def test_each_documented_answer_has_its_meaning(
    status: int, body: Any, action: str, outcome: str | None
) -> None:
    """Every Send API answer the worker tells apart is classified as the docs say."""
    answer = rules.classify(status, body)
    assert (answer.action, answer.outcome) == (action, outcome)


def test_a_delivery_keeps_the_message_id_and_a_refusal_its_codes() -> None:
    assert rules.classify(200, {"message_id": "m_9"}).message_id == "m_9"
    refused = rules.classify(400, api_error(10, 2018108))
    assert (refused.code, refused.subcode) == (10, 2018108)


def model_before_send(
    n: model.Notification, now: int, ended: set[str], delivered: set[str]
) -> str | None:
    """The rule, said independently: a delivered id is never sent twice; after its
    consent's CONSENT_ENDED only that CONSENT_ENDED goes; nothing goes once expired."""
    if n["notification_id"] in delivered:
        return "DUPLICATE"
    ended_before = n["consent_id"] in ended
    if ended_before and n["kind"] != "CONSENT_ENDED":
        return "CONSENT_ENDED"
    return "EXPIRED" if n["expires_at"] <= now else None


KINDS = ["TRANSACTION", "LARGE_TRANSACTION", "DAILY_DIGEST", "CONSENT_ENDED", "RESPONSE"]
cases = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(["c-1", "c-2"]),
    st.sampled_from(["n-1", "n-2"]),
    st.integers(NOW - 10, NOW + 10),
    st.sets(st.sampled_from(["c-1", "c-2"])),
    st.sets(st.sampled_from(["n-1", "n-2"])),
)


def check_before_send(before: Callable[..., Any]) -> None:
    @settings(max_examples=300, deadline=None)
    @given(cases)
    def agree(case: tuple[Any, ...]) -> None:
        kind, consent_id, ident, expires_at, ended, delivered = case
        n = notification(
            kind=kind, consent_id=consent_id, notification_id=ident, expires_at=expires_at
        )
        assert before(n, NOW, ended, delivered) == model_before_send(n, NOW, ended, delivered)

    agree()


def test_before_send_agrees_with_its_model() -> None:
    """The barrier, expiry and duplicates, over every combination, agree with the model."""
    check_before_send(rules.before_send)


def test_backoff_doubles_up_to_its_cap_with_jitter_within_half() -> None:
    for attempt in range(1, 20):
        ceiling = min(rules.BACKOFF_CAP_S, rules.BACKOFF_BASE_S * 2 ** (attempt - 1))
        assert rules.backoff(attempt, 0.0) == pytest.approx(ceiling / 2)
        assert ceiling / 2 <= rules.backoff(attempt, 0.999) <= ceiling
    assert rules.backoff(30, 0.999) <= rules.BACKOFF_CAP_S


def test_a_page_budget_never_goes_faster_than_its_rate() -> None:
    """Over a simulated minute of calls as fast as allowed, a Page makes at most
    rate × seconds + one second's worth of calls."""
    budget = rules.PageBudget(10)
    now, calls = 1000.0, 0
    while now < 1060.0:
        wait = budget.take(now)
        if wait == 0:
            calls += 1
        now += max(wait, 0.001)
    assert 600 <= calls <= 611


def test_a_rate_limit_halves_the_pace_and_pauses_longer_each_time_in_a_row() -> None:
    """A rate-limit answer halves the rate and pauses the Page; answers to calls made
    before the pause do not count again; the next one after it pauses twice as long;
    an ordinary answer starts over from the shortest pause, a little faster."""
    budget = rules.PageBudget(100)
    first = budget.throttled(0.0)
    assert (first, budget.rate) == (rules.THROTTLE_PAUSE_S, 50)
    assert budget.throttled(0.1) == pytest.approx(first - 0.1) and budget.rate == 50
    assert budget.take(0.2) > 0  # paused
    assert budget.throttled(first) == 2 * first and budget.rate == 25
    budget.calm()
    assert budget.rate == 26
    assert budget.throttled(10.0) == first


class TestJournal:
    def test_what_was_done_and_ended_is_remembered_across_a_restart(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path, NOW)
        journal.sending("n-1")
        journal.done("n-1", NOW, "DELIVERED", "m_1")
        journal.done("n-3", NOW, "BLOCKED", None)
        journal.end("c-1", NOW)
        journal.sending("n-2")  # in flight when the worker is killed: no close
        again = Journal(tmp_path, NOW + 1)
        assert again.delivered == {"n-1": (NOW, "DELIVERED", "m_1"), "n-3": (NOW, "BLOCKED", "-")}
        assert set(again.ended) == {"c-1"}
        assert again.uncertain == 1

    def test_old_entries_are_forgotten_when_it_is_rewritten(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path, NOW)
        journal.done("old", NOW, "DELIVERED", "m_2")
        journal.close()
        later = Journal(tmp_path, NOW + 9 * 86_400_000)
        assert later.delivered == {} and later.uncertain == 0

    def test_the_journal_is_owner_only(self, tmp_path: Path) -> None:
        Journal(tmp_path / "state", NOW)
        assert (tmp_path / "state" / "journal").stat().st_mode & 0o077 == 0


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(12))), st.integers(0, 12))
def test_the_offset_committed_never_passes_a_record_not_done(
    order: list[int], finished: int
) -> None:
    """Records finish in any order; the offset to commit is always the oldest not done."""
    offsets = Offsets()
    slots = [offsets.read("tp", 100 + i) for i in range(12)]
    for i in order[:finished]:
        Offsets.done(slots[i])
    pending = [100 + i for i in range(12) if i not in order[:finished]]
    assert offsets.committable() == {"tp": min(pending) if pending else 112}


class TestUnreachable:
    def held(self, muted: consent_rules.Mute | None = None) -> Held:
        return Held(samples.CONSENT, None, muted=muted)

    def test_a_report_mutes_the_consent_it_names_and_withholds_with_unreachable(self) -> None:
        change = consent_rules.unreachable(self.held(), samples.CONSENT["consent_id"])
        assert change.held.muted == "UNREACHABLE"
        granted = release("TRANSACTION", change.held, NOW, NOW)
        assert granted.withheld == "UNREACHABLE"

    def test_a_report_about_another_consent_changes_nothing(self) -> None:
        assert consent_rules.unreachable(self.held(), "another").outcome == "ignored"

    def test_a_stop_stays_a_stop(self) -> None:
        change = consent_rules.unreachable(self.held("STOP"), samples.CONSENT["consent_id"])
        assert change.outcome == "ignored" and change.held.muted == "STOP"

    def test_an_answer_still_goes_to_an_unreachable_recipient_who_writes(self) -> None:
        """A customer who writes to the Page is reachable again: answers are not muted."""
        muted = consent_rules.unreachable(self.held(), samples.CONSENT["consent_id"]).held
        granted = release("RESPONSE", muted, NOW, asks="BALANCES", to=samples.CONSENT["psid"])
        assert granted.allowed


# Mutants: the rules with one line wrong; each must be caught above.
def _mutant_no_barrier(n: Any, now: int, ended: Any, delivered: Any) -> Any:
    if n["notification_id"] in delivered:
        return "DUPLICATE"
    return "EXPIRED" if now >= n["expires_at"] else None


def _mutant_barrier_drops_its_own_consent_ended(
    n: Any, now: int, ended: Any, delivered: Any
) -> Any:
    if n["notification_id"] in delivered:
        return "DUPLICATE"
    if n["consent_id"] in ended:
        return "CONSENT_ENDED"
    return "EXPIRED" if now >= n["expires_at"] else None


def _mutant_expiry_off_by_one(n: Any, now: int, ended: Any, delivered: Any) -> Any:
    if n["notification_id"] in delivered:
        return "DUPLICATE"
    if n["kind"] != "CONSENT_ENDED" and n["consent_id"] in ended:
        return "CONSENT_ENDED"
    return "EXPIRED" if now > n["expires_at"] else None


def _mutant_resends_delivered(n: Any, now: int, ended: Any, delivered: Any) -> Any:
    if n["kind"] != "CONSENT_ENDED" and n["consent_id"] in ended:
        return "CONSENT_ENDED"
    return "EXPIRED" if now >= n["expires_at"] else None


@pytest.mark.parametrize(
    "mutant",
    [
        _mutant_no_barrier,
        _mutant_barrier_drops_its_own_consent_ended,
        _mutant_expiry_off_by_one,
        _mutant_resends_delivered,
    ],
)
def test_each_mutant_of_before_send_is_caught(mutant: Callable[..., Any]) -> None:
    with pytest.raises(AssertionError):
        check_before_send(mutant)
