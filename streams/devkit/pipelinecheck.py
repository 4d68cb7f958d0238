"""The independent checker of the pipeline: what a run should have decided and notified.

The reference model of the consent gate and of TRANSACTION notifications,
written apart from streams.rules: per account, in the order of the account
stream, a consent update counts only if strictly newer than every version
seen; an ending status, a tombstone or a tick at or past valid_until ends
it (and forgets the account's transactions); a transaction passes only
under a VALID consent with TRANSACTIONS (or ALERTS or SUMMARIES), before
valid_until at its arrival and its booking, inside its range; a repeated id
is a DUPLICATE, a booking older than 48 h is STALE. A passing transaction
expects one TRANSACTION notification with TRANSACTIONS, unless it is the
BOOKED of a PENDING already seen. Alerts and digests are not modelled here.

The counts it reports (missing, duplicates, leaks, conflicting repeats) are
those of `streams/devkit/checker.py`, which checks the stand-in workload.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.devkit.checker import TICK_KEY
from streams.devkit.diagnosis import SOURCE_HEADERS, twins, undecided_or_conflicting
from streams.kafka import read_all
from streams.settings import Settings

STALE_MS = 2 * 86_400_000
ENDING = {"REVOKED_BY_PSU", "EXPIRED", "TERMINATED_BY_TPP"}
USES = {"TRANSACTIONS", "ALERTS", "SUMMARIES"}
# What a question from the chat needs (DESIGN.md, "Conversation").
QUESTION_NEEDS = {"BALANCE": "BALANCES", "RECENT": "TRANSACTIONS", "MONTH": "SUMMARIES"}
Asked = tuple[str, int, str]
"""A question on an account's stream: (psid, sent_at, bank)."""


@dataclass
class PipelineReport:
    transactions: int = 0
    decisions_expected: int = 0
    decisions_seen: int = 0
    decision_mismatches: int = 0
    notifications_expected: int = 0
    notifications_seen: int = 0
    missing: int = 0
    duplicates: int = 0
    leaks: int = 0
    repeated_inputs: int = 0
    """Account-stream records whose source record (topic, partition, offset) was
    already forwarded: ingest passed one bank or consent record on twice."""
    twin_inputs: int = 0
    """Account-stream records with the same source record *and* timestamp as an earlier
    one: their Decisions share an identity (source, decided_at) and cannot be told apart."""
    repeats: int = 0
    """Identical copies of a decision or notification, removed before comparing
    (only when repeats are allowed: at-least-once)."""
    conflicting: int = 0
    """Copies that share an identity but not their content (never allowed)."""
    examples: list[str] = field(default_factory=list)
    """When decisions are short or conflict: a few of the stream records concerned."""

    @property
    def exact(self) -> bool:
        return (
            self.decision_mismatches
            == self.missing
            == self.duplicates
            == self.leaks
            == self.repeated_inputs
            == 0
            and self.decisions_seen == self.decisions_expected > 0
        )

    @property
    def at_least_once(self) -> bool:
        """Once identical repeats are set aside: nothing lost, invented or different."""
        return (
            self.decision_mismatches == self.missing == self.leaks == self.conflicting == 0
            and self.decisions_seen == self.decisions_expected > 0
        )

    def table(self) -> str:
        counts = "  ".join(f"{k}={v}" for k, v in asdict(self).items() if k != "examples")
        return "\n".join((counts, *self.examples))


def _notification_id(kind: str, *source: str) -> str:
    """The contract's deterministic id (DESIGN.md: the same source and kind, the same id)."""
    import hashlib

    return "ntf-" + hashlib.sha256("\x1f".join((kind, *source)).encode()).hexdigest()[:32]


def expected_from_stream(
    codec: Any, stream: list[Any], answers: dict[Asked, bool] | None = None
) -> tuple[dict[str, list[tuple[str, str | None]]], set[str], set[str]]:
    """(decision per transaction id, TRANSACTION ids expected, TRANSACTION ids never allowed).
    Each customer's question read on the stream is put in `answers`, if given: whether
    the consent held when it was read lets its answer carry data."""
    newest: dict[bytes, int] = {}
    live: dict[bytes, dict[str, Any] | None] = {}
    unreadable: set[bytes] = set()
    seen: dict[bytes, set[str]] = defaultdict(set)
    pending: dict[bytes, set[str]] = defaultdict(set)
    decisions: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    wanted: set[str] = set()
    forbidden: set[str] = set()
    for record in sorted(stream, key=lambda r: (r.partition, r.offset)):
        if record.key == TICK_KEY:
            now = json.loads(record.value)["now"]
            for key, consent in list(live.items()):
                if consent and consent["status"] == "VALID" and now >= consent["valid_until"]:
                    live[key] = None
                    seen.pop(key, None)
                    pending.pop(key, None)
            continue
        kind = dict(record.headers).get("kind")
        key = record.key
        if kind == b"consent-unreadable":  # fail closed until a newer readable record
            unreadable.add(key)
            continue
        if kind == b"dead":  # a record ingest dead-lettered: the accounts stage seals it
            continue
        if kind == b"request":  # a question from the chat: answered under the consent now
            asked, c = json.loads(record.value), live.get(key)
            if answers is not None:
                answers[(asked["psid"], asked["sent_at"], key.split(b":")[0].decode())] = (
                    c is not None
                    and key not in unreadable
                    and c["status"] == "VALID"
                    and record.timestamp < c["valid_until"]
                    and c["psid"] == asked["psid"]
                    and QUESTION_NEEDS[asked["intent"]] in c["permissions"]
                )
            continue
        if kind == b"consent":
            update = (
                None if record.value is None else codec.decode("passerelle.Consent", record.value)
            )
            if update is None:  # the authority forgot the account: every version too
                live[key] = None
                newest.pop(key, None)
                unreadable.discard(key)
                seen.pop(key, None)
                pending.pop(key, None)
            elif key not in newest or update["updated_at"] > newest[key]:
                newest[key] = update["updated_at"]
                unreadable.discard(key)
                held = live.get(key)
                replaced = held is not None and any(
                    held[f] != update[f] for f in ("consent_id", "psid", "page_id")
                )
                live[key] = None if update["status"] in ENDING else update
                if update["status"] in ENDING or replaced:  # the state is erased
                    seen.pop(key, None)
                    pending.pop(key, None)
            continue
        tx = codec.decode("passerelle.Transaction", record.value)
        ident = _notification_id("TRANSACTION", tx["bank_id"], tx["transaction_id"])
        c, now, booked = live.get(key), record.timestamp, tx["booked_at"]
        allowed = (
            c is not None
            and key not in unreadable
            and c["status"] == "VALID"
            and now < c["valid_until"]
            and booked < c["valid_until"]
            and (c["transaction_from"] is None or booked >= c["transaction_from"])
            and (c["transaction_to"] is None or booked <= c["transaction_to"])
            and bool(USES & set(c["permissions"]))
        )
        if not allowed or c is None:
            decisions[tx["transaction_id"]].append(("WITHHELD", None))
            forbidden.add(ident)
            continue
        if tx["transaction_id"] in seen[key]:
            decisions[tx["transaction_id"]].append(("WITHHELD", "DUPLICATE"))
            continue
        seen[key].add(tx["transaction_id"])
        if booked < now - STALE_MS:
            decisions[tx["transaction_id"]].append(("WITHHELD", "STALE"))
            continue
        decisions[tx["transaction_id"]].append(("FORWARDED", None))
        settles = tx["status"] == "BOOKED" and tx["pending_transaction_id"] in pending[key]
        if tx["status"] == "PENDING":
            pending[key].add(tx["transaction_id"])
        if settles:
            pending[key].discard(tx["pending_transaction_id"])
        elif "TRANSACTIONS" in c["permissions"]:
            wanted.add(ident)
        else:
            forbidden.add(ident)
    # A source withheld once and allowed later (a bank's retry after the consent) may notify.
    return decisions, wanted, forbidden - wanted


async def check_pipeline(
    settings: Settings, codec: Any, app_id: str, banks: list[str], repeats_allowed: bool = False
) -> PipelineReport:
    """Check a pipeline run of `app_id` over `banks` against the reference model.

    With `repeats_allowed` (at-least-once), identical copies of a decision (same
    source record, same decision time) or of a notification (same id) are set
    aside first and counted as `repeats`; copies that differ are `conflicting`."""
    ours = tuple(f"{b}:".encode() for b in banks)
    stream = [
        r
        for r in await read_all(settings, f"{app_id}.accounts")
        if r.key == TICK_KEY or (r.key or b"").startswith(ours)
    ]
    decided = [
        d
        for s, d in (
            codec.decode_any(r.value) for r in await read_all(settings, "passerelle.audit.v1")
        )
        if s == "passerelle.Decision" and d["bank_id"] in banks
    ]
    notes = [
        n
        for n in (
            codec.decode("passerelle.Notification", r.value)
            for r in await read_all(settings, "messenger.notifications.v1")
        )
        if n["bank_id"] in banks
    ]
    everything, repeats, conflicting = decided, 0, 0
    if repeats_allowed:
        decided, repeats, conflicting = without_repeats(decided, _decision_identity)
        notes, more_repeats, more_conflicting = without_repeats(
            notes, lambda n: n["notification_id"]
        )
        repeats, conflicting = repeats + more_repeats, conflicting + more_conflicting
    report = compare_pipeline(expected_from_stream(codec, stream), decided, notes)
    report.repeated_inputs = repeated_sources(stream)
    report.twin_inputs = twins(stream)
    report.repeats, report.conflicting = repeats, conflicting
    if conflicting or report.decisions_seen != report.decisions_expected:
        report.examples = undecided_or_conflicting(stream, everything)
    return report


def _decision_identity(decision: dict[str, Any]) -> tuple[Any, ...]:
    source = ("source_topic", "source_partition", "source_offset", "decided_at")
    return tuple(decision[k] for k in source)


def without_repeats(
    outputs: list[dict[str, Any]], identity: Callable[[dict[str, Any]], Any]
) -> tuple[list[dict[str, Any]], int, int]:
    """The outputs with later copies of an identity removed: (kept, identical copies,
    copies whose content differs from the first)."""
    first: dict[Any, dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    repeats = conflicting = 0
    for output in outputs:
        key = identity(output)
        if key not in first:
            first[key] = output
            kept.append(output)
        elif first[key] == output:
            repeats += 1
        else:
            conflicting += 1
    return kept, repeats, conflicting


def repeated_sources(stream: list[Any]) -> int:
    """How many account-stream records repeat a source record already forwarded."""
    sources: Counter[tuple[bytes, ...]] = Counter()
    for record in stream:
        if record.key != TICK_KEY:
            headers = dict(record.headers)
            if headers.get("kind") == b"request":  # a question has no source record: its mid
                sources[(record.key, json.loads(record.value)["mid"].encode())] += 1
                continue
            sources[tuple(headers.get(h, b"") for h in SOURCE_HEADERS)] += 1
    return sum(n - 1 for n in sources.values())


def compare_pipeline(
    expected: tuple[dict[str, list[tuple[str, str | None]]], set[str], set[str]],
    decided: list[dict[str, Any]],
    notes: list[dict[str, Any]],
) -> PipelineReport:
    """The model's expectations against the Decisions and notifications a run wrote."""
    decisions, wanted, _never_allowed = expected
    left = {tx_id: list(outcomes) for tx_id, outcomes in decisions.items()}
    total = sum(len(outcomes) for outcomes in decisions.values())
    report = PipelineReport(
        transactions=total, decisions_expected=total, notifications_expected=len(wanted)
    )
    for decision in decided:
        report.decisions_seen += 1
        candidates = left.get(decision["transaction_id"], [])
        match = next(
            (
                c
                for c in candidates
                if c[0] == decision["outcome"] and (c[1] is None or c[1] == decision["reason"])
            ),
            None,
        )
        if match is None:
            report.decision_mismatches += 1
        else:
            candidates.remove(match)
    counts: Counter[str] = Counter()
    for note in notes:
        if note["kind"] != "TRANSACTION":
            continue
        counts[note["notification_id"]] += 1
        report.notifications_seen += 1
        if note["notification_id"] not in wanted:  # no allowed occurrence of its source
            report.leaks += 1
    report.missing = len(wanted - counts.keys())
    report.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    return report
