"""The independent checker reports each planted fault, and nothing on a clean run."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from streams.devkit.checker import compare
from streams.devkit.conversationcheck import compare_conversation


class Rec(NamedTuple):
    key: bytes
    value: bytes | None
    partition: int = 0
    offset: int = 0


def inputs(n: int, keys: int = 2) -> list[Rec]:
    return [Rec(f"k{i % keys}".encode(), json.dumps({"id": i}).encode(), 0, i) for i in range(n)]


def outputs_for(records: list[Rec]) -> list[Rec]:
    """What a correct stand-in run writes to one output topic."""
    counts: dict[bytes, int] = {}
    out = []
    for r in records:
        counts[r.key] = counts.get(r.key, 0) + 1
        body = {"id": json.loads(r.value or b"")["id"], "count": counts[r.key]}
        out.append(Rec(r.key, json.dumps(body).encode()))
    return out


def changelog_for(records: list[Rec]) -> list[Rec]:
    counts: dict[bytes, int] = {}
    for r in records:
        counts[r.key] = counts.get(r.key, 0) + 1
    return [Rec(b"counts\x00" + k, json.dumps({"count": n}).encode()) for k, n in counts.items()]


def run(
    ins: list[Rec],
    out_a: list[Rec],
    out_b: list[Rec],
    log: list[Rec],
    summaries: list[Any] | None = None,
) -> Any:
    return compare(ins, {"out-a": out_a, "out-b": out_b}, log, summaries)


class TestChecker:
    def test_a_clean_run_is_exact(self) -> None:
        """Every output once and the state right: exact, with seen = expected."""
        ins = inputs(10)
        report = run(ins, outputs_for(ins), outputs_for(ins), changelog_for(ins))
        assert report.exact and (report.expected, report.seen) == (20, 20)

    def test_a_planted_loss_is_missing(self) -> None:
        """An input with no out-b record counts one missing."""
        ins = inputs(10)
        report = run(ins, outputs_for(ins), outputs_for(ins)[1:], changelog_for(ins))
        assert report.missing == 1 and not report.exact and not report.at_least_once

    def test_a_planted_identical_duplicate_is_a_duplicate_but_allowed_at_least_once(self) -> None:
        """A repeated identical output is a duplicate, not a conflict."""
        ins = inputs(10)
        a = outputs_for(ins)
        report = run(ins, [*a, a[3]], outputs_for(ins), changelog_for(ins))
        assert (report.duplicates, report.conflicting) == (1, 0)
        assert not report.exact and report.at_least_once

    def test_a_repeat_with_other_content_is_conflicting(self) -> None:
        """A repeat whose count differs (state counted twice) breaks even at-least-once."""
        ins = inputs(10)
        a = outputs_for(ins)
        other = Rec(a[3].key, json.dumps({"id": 3, "count": 99}).encode())
        report = run(ins, [*a, other], outputs_for(ins), changelog_for(ins))
        assert report.conflicting == 1 and not report.at_least_once

    def test_a_planted_leak_is_reported(self) -> None:
        """An output that no input explains is a leak."""
        ins = inputs(10)
        stray = Rec(b"k9", json.dumps({"id": 12345, "count": 1}).encode())
        report = run(ins, [*outputs_for(ins), stray], outputs_for(ins), changelog_for(ins))
        assert report.leaks == 1 and not report.exact

    def test_a_wrong_final_state_is_a_state_mismatch(self) -> None:
        """A changelog whose final count differs from the inputs' is a state mismatch."""
        ins = inputs(10)
        log = [*changelog_for(ins), Rec(b"counts\x00k0", json.dumps({"count": 4}).encode())]
        report = run(ins, outputs_for(ins), outputs_for(ins), log)
        assert report.state_mismatches == 1

    def test_a_second_summary_for_a_key_is_a_duplicate(self) -> None:
        """Ticks must summarize each key once with its final count."""
        ins = inputs(10)
        summaries = [
            Rec(b"k0", b'{"count": 5}'),
            Rec(b"k1", b'{"count": 5}'),
            Rec(b"k1", b'{"count": 5}'),
        ]
        report = run(ins, outputs_for(ins), outputs_for(ins), changelog_for(ins), summaries)
        assert report.duplicates == 1 and report.missing == 0


class TestPipelineChecker:
    """The pipeline model, on an account stream built here, with planted faults."""

    @staticmethod
    def stream(codec: Any) -> list[Any]:
        from tests import samples

        consent = {**samples.CONSENT, "valid_until": samples.BOOKED_AT + 10**9}
        key = b"banque-alpine:FR7630006000011234567890189"

        def tx(n: int) -> bytes:
            frame: bytes = codec.encode(
                "passerelle.Transaction",
                {**samples.TRANSACTION, "transaction_id": f"t{n}", "pending_transaction_id": None},
            )
            return frame

        at = samples.BOOKED_AT + 1000
        records = [
            Rec(b"banque-alpine:NOBODY", tx(0), 0, 0),  # no consent for this account
            Rec(key, codec.encode("passerelle.Consent", consent), 0, 1),
            Rec(key, tx(1), 0, 2),
            Rec(key, tx(1), 0, 3),  # a duplicate
        ]
        kinds = [b"transaction", b"consent", b"transaction", b"transaction"]
        return [
            _Stream(r.key, r.value, r.partition, r.offset, at, [("kind", k)])
            for r, k in zip(records, kinds, strict=True)
        ]

    def test_a_clean_run_is_exact_and_a_leak_is_caught(self, codec: Any) -> None:
        """The right decisions and one TRANSACTION pass; a notification for the account
        without consent is a leak; a repeated one a duplicate; a lost one missing."""
        from streams.devkit.pipelinecheck import (
            _notification_id,
            compare_pipeline,
            expected_from_stream,
        )

        expected = expected_from_stream(codec, self.stream(codec))
        decided: list[dict[str, Any]] = [
            {"transaction_id": "t0", "outcome": "WITHHELD", "reason": "NO_CONSENT"},
            {"transaction_id": "t1", "outcome": "FORWARDED", "reason": None},
            {"transaction_id": "t1", "outcome": "WITHHELD", "reason": "DUPLICATE"},
        ]
        good = {
            "kind": "TRANSACTION",
            "notification_id": _notification_id("TRANSACTION", "banque-alpine", "t1"),
        }
        leak = {
            "kind": "TRANSACTION",
            "notification_id": _notification_id("TRANSACTION", "banque-alpine", "t0"),
        }
        assert compare_pipeline(expected, decided, [good]).exact
        assert compare_pipeline(expected, decided, [good, leak]).leaks == 1
        assert compare_pipeline(expected, decided, [good, good]).duplicates == 1
        assert compare_pipeline(expected, decided, []).missing == 1
        wrong: list[dict[str, Any]] = [
            {**decided[0], "outcome": "FORWARDED", "reason": None},
            *decided[1:],
        ]
        assert compare_pipeline(expected, wrong, [good]).decision_mismatches == 1


class _Stream(NamedTuple):
    key: bytes
    value: bytes | None
    partition: int
    offset: int
    timestamp: int
    headers: list[tuple[str, bytes]]


class TestRetriedSource:
    def test_a_source_withheld_then_allowed_may_notify(self, codec: Any) -> None:
        """A transaction withheld before its consent and resent after it is not a leak."""
        from streams.devkit.pipelinecheck import (
            _notification_id,
            compare_pipeline,
            expected_from_stream,
        )
        from tests import samples

        key = b"banque-alpine:FR7630006000011234567890189"
        consent = {**samples.CONSENT, "valid_until": samples.BOOKED_AT + 10**9}
        frame = codec.encode(
            "passerelle.Transaction", {**samples.TRANSACTION, "pending_transaction_id": None}
        )
        at = samples.BOOKED_AT + 1000
        stream = [
            _Stream(key, frame, 0, 0, at, [("kind", b"transaction")]),
            _Stream(
                key, codec.encode("passerelle.Consent", consent), 0, 1, at, [("kind", b"consent")]
            ),
            _Stream(key, frame, 0, 2, at, [("kind", b"transaction")]),
        ]
        expected = expected_from_stream(codec, stream)
        tx_id = samples.TRANSACTION["transaction_id"]
        decided: list[dict[str, Any]] = [
            {"transaction_id": tx_id, "outcome": "WITHHELD", "reason": "NO_CONSENT"},
            {"transaction_id": tx_id, "outcome": "FORWARDED", "reason": None},
        ]
        note = {
            "kind": "TRANSACTION",
            "notification_id": _notification_id("TRANSACTION", "banque-alpine", tx_id),
        }
        assert compare_pipeline(expected, decided, [note]).exact


class TestWhatFailedIsShown:
    def test_an_undecided_or_conflicting_stream_record_is_named_by_its_coordinates(
        self,
    ) -> None:
        """A failed report names the stream records no Decision names and those whose
        Decisions disagree, by partition, offset, time and source; twins (same source,
        same time) are counted."""
        from streams.devkit.diagnosis import twins, undecided_or_conflicting

        def record(offset: int, at: int, source_offset: int) -> _Stream:
            source = [("source-topic", b"bank.a"), ("source-partition", b"0")]
            headers = [("kind", b"transaction"), *source, ("source-offset", b"%d" % source_offset)]
            return _Stream(b"b:acc", b"", 3, offset, at, headers)

        def decision(source_offset: int, at: int, outcome: str) -> dict[str, Any]:
            return {
                "source_topic": "bank.a",
                "source_partition": 0,
                "source_offset": source_offset,
                "decided_at": at,
                "outcome": outcome,
                "reason": None,
            }

        stream = [record(10, 1000, 7), record(11, 1001, 8), record(12, 1002, 8)]
        decided = [decision(7, 1000, "FORWARDED"), decision(7, 1000, "WITHHELD")]
        decided.append(decision(8, 1001, "FORWARDED"))
        shown = undecided_or_conflicting(stream, decided)
        assert shown == [
            "undecided: stream 3@12 t=1002 of ('bank.a', 0, 8); "
            "its source decided [(1001, 'FORWARDED', None)]",
            "conflicting: stream 3@10 t=1000 of ('bank.a', 0, 7): "
            "[('FORWARDED', None), ('WITHHELD', None)]",
        ]
        assert twins(stream) == 0
        assert twins([*stream, record(13, 1002, 8)]) == 1


class TestConsentPaths:
    def test_the_model_withholds_after_an_unreadable_consent_and_forgets_on_replacement(
        self, codec: Any
    ) -> None:
        """An unreadable-consent marker withholds the account's next transaction (a
        notification for it is a leak); a newer consent with another psid starts with
        nothing seen, so the same transaction id is forwarded again, not a DUPLICATE."""
        from streams.devkit.pipelinecheck import (
            _notification_id,
            compare_pipeline,
            expected_from_stream,
        )
        from tests import samples

        key = b"banque-alpine:FR7630006000011234567890189"
        consent = {**samples.CONSENT, "valid_until": samples.BOOKED_AT + 10**9}
        version = samples.CONSENT["updated_at"]
        newer = {**consent, "psid": "another-psid", "updated_at": version + 1}
        newest = {**newer, "updated_at": version + 2}
        frame = codec.encode(
            "passerelle.Transaction", {**samples.TRANSACTION, "pending_transaction_id": None}
        )
        at = samples.BOOKED_AT + 1000

        def rec(offset: int, value: bytes | None, kind: bytes) -> _Stream:
            return _Stream(key, value, 0, offset, at, [("kind", kind)])

        stream = [
            rec(0, codec.encode("passerelle.Consent", consent), b"consent"),
            rec(1, frame, b"transaction"),
            rec(2, None, b"consent-unreadable"),
            rec(3, frame, b"transaction"),
            rec(4, codec.encode("passerelle.Consent", newer), b"consent"),
            rec(5, codec.encode("passerelle.Consent", newest), b"consent"),
            rec(6, frame, b"transaction"),
        ]
        decisions, wanted, _ = expected_from_stream(codec, stream)
        tx_id = samples.TRANSACTION["transaction_id"]
        assert decisions[tx_id] == [("FORWARDED", None), ("WITHHELD", None), ("FORWARDED", None)]
        ident = _notification_id("TRANSACTION", "banque-alpine", tx_id)
        assert wanted == {ident}
        decided: list[dict[str, Any]] = [
            {"transaction_id": tx_id, "outcome": o, "reason": r}
            for o, r in [("FORWARDED", None), ("WITHHELD", "NO_CONSENT"), ("FORWARDED", None)]
        ]
        note = {"kind": "TRANSACTION", "notification_id": ident}
        assert compare_pipeline((decisions, wanted, set()), decided, [note, note]).duplicates == 1


class TestRepeatedSources:
    def test_a_source_record_forwarded_twice_is_counted_once_per_repeat(self) -> None:
        """Two stream records naming the same bank record are one repeat; ticks and distinct
        sources are none."""
        from streams.devkit.checker import TICK_KEY
        from streams.devkit.pipelinecheck import repeated_sources

        def forwarded(offset: int, source_offset: int) -> _Stream:
            source = [("source-topic", b"bank.a"), ("source-partition", b"0")]
            headers = [("kind", b"transaction"), *source, ("source-offset", b"%d" % source_offset)]
            return _Stream(b"a:1", b"", 0, offset, 0, headers)

        tick = _Stream(TICK_KEY, b"{}", 0, 9, 0, [])
        assert repeated_sources([forwarded(0, 7), forwarded(1, 8), tick, tick]) == 0
        assert repeated_sources([forwarded(0, 7), forwarded(1, 7), forwarded(2, 7)]) == 2


class TestRepeats:
    def test_identical_copies_are_repeats_and_different_ones_conflict(self) -> None:
        """At-least-once: a second identical copy is set aside as a repeat; a copy with the
        same identity and other content is conflicting; distinct identities are kept."""
        from streams.devkit.pipelinecheck import without_repeats

        a, b = {"id": "a", "kind": "X"}, {"id": "b", "kind": "X"}
        kept, repeats, conflicting = without_repeats(
            [a, b, dict(a), {"id": "a", "kind": "Y"}], lambda o: o["id"]
        )
        assert (kept, repeats, conflicting) == ([a, b], 1, 1)


class TestConversationCheck:
    """The fault suite's check of answers in the chat finds each way they can go wrong."""

    QUESTION = ("psid-1", 1_000, "bank-a")

    @staticmethod
    def answer(ident: str = "ntf-1", balance: int | None = None, at: int = 1_000) -> Any:
        data = {f: None for f in ("amount_minor", "merchant_name", "category", "digest")}
        return {
            "notification_id": ident,
            "psid": "psid-1",
            "occurred_at": at,
            "bank_id": "bank-a",
            "text": "t",
            "data": {**data, "balance_minor": balance},
        }

    def test_one_answer_to_each_question_is_exact(self) -> None:
        report = compare_conversation({self.QUESTION: True}, [self.answer(balance=5)])
        assert report.exact and report.answered == 1

    def test_data_the_consent_did_not_allow_then_is_a_leak(self) -> None:
        report = compare_conversation({self.QUESTION: False}, [self.answer(balance=5)])
        assert report.leaks == 1 and not report.exact and not report.at_least_once

    def test_a_refusal_after_the_consent_ended_is_no_leak(self) -> None:
        assert compare_conversation({self.QUESTION: False}, [self.answer()]).exact

    def test_a_question_without_answer_is_missing_and_two_are_a_duplicate(self) -> None:
        assert compare_conversation({self.QUESTION: True}, []).missing == 1
        two = [self.answer("ntf-1"), self.answer("ntf-2")]
        assert compare_conversation({self.QUESTION: True}, two).duplicates == 1

    def test_identical_repeats_pass_at_least_once_and_different_ones_conflict(self) -> None:
        same = [self.answer(), self.answer()]
        report = compare_conversation({self.QUESTION: True}, same, repeats_allowed=True)
        assert report.at_least_once and report.repeats == 1
        differ = [self.answer(), {**self.answer(), "text": "other"}]
        report = compare_conversation({self.QUESTION: True}, differ, repeats_allowed=True)
        assert report.conflicting == 1 and not report.at_least_once

    def test_an_answer_to_no_question_read_is_unasked(self) -> None:
        report = compare_conversation({}, [self.answer(at=2_000)])
        assert report.unasked == 1 and not report.exact


class TestConversationModel:
    def test_a_question_read_after_the_revocation_may_not_be_answered_with_data(
        self, codec: Any
    ) -> None:
        """On the account's stream: a question before the revocation may carry the
        balance; the same psid's question after it may not; another psid's never."""
        from streams.devkit.pipelinecheck import expected_from_stream
        from tests import samples

        key = b"banque-alpine:FR7630006000011234567890189"
        consent: dict[str, Any] = {**samples.CONSENT, "valid_until": samples.BOOKED_AT + 10**9}
        revoked = {**consent, "status": "REVOKED_BY_PSU", "updated_at": consent["updated_at"] + 1}
        at = samples.BOOKED_AT + 1000
        psid = samples.CONSENT["psid"]

        def asked(who: str, sent_at: int) -> bytes:
            body = {"mid": "m", "psid": who, "page_id": "p", "intent": "BALANCE"}
            return json.dumps({**body, "sent_at": sent_at, "locale": "fr-FR"}).encode()

        records = [
            (codec.encode("passerelle.Consent", consent), b"consent"),
            (asked(psid, 1), b"request"),
            (asked("someone-else", 2), b"request"),
            (codec.encode("passerelle.Consent", revoked), b"consent"),
            (asked(psid, 3), b"request"),
        ]
        stream = [
            _Stream(key, value, 0, n, at, [("kind", kind)])
            for n, (value, kind) in enumerate(records)
        ]
        allowed: dict[Any, bool] = {}
        expected_from_stream(codec, stream, allowed)
        assert allowed == {
            (psid, 1, "banque-alpine"): True,
            ("someone-else", 2, "banque-alpine"): False,
            (psid, 3, "banque-alpine"): False,
        }
