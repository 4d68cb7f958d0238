"""Customers asking during a run, and the check of their answers against the stream.

`talk` plays customers: it writes questions (balance, last transactions, this
month) to `messenger.inbound.v1` from the psids of the consents a run's banks
granted, at a steady rate, until told to stop. `check_conversation` then reads
what came of them, after the run, and compares with the reference model of
`streams.devkit.pipelinecheck`: every question that reached an account's
stream (a `request` record) has exactly one answer about that account (or,
under at-least-once, identical repeats of one), and an answer carries data only
if the consent held when its request was read on the account's stream was
VALID, named the asker and granted what the question needs: no answer after
its consent ended. Questions from a psid no consent named when it was read
never reach an account's stream; they are counted, not checked.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from streams import kafka
from streams.devkit.checker import TICK_KEY
from streams.devkit.pipelinecheck import Asked, expected_from_stream, without_repeats
from streams.kafka import read_all
from streams.settings import Settings
from streams.tools import consent

INBOUND = "messenger.inbound.v1"
QUESTIONS = ("solde ?", "dernières opérations", "ce mois", "balance", "this month")
DATA_FIELDS = ("amount_minor", "merchant_name", "category", "balance_minor", "digest")


@dataclass
class Talked:
    """What `talk` wrote: each question's (psid, sent_at)."""

    said: list[tuple[str, int]] = field(default_factory=list)


async def talk(
    settings: Settings,
    codec: Any,
    banks: list[str],
    rate: float,
    stop: asyncio.Event,
    seed: int,
    talked: Talked,
) -> None:
    """Questions from the banks' consenting psids, `rate` a second, until `stop`."""
    rng = random.Random(seed)
    ours = tuple(f"{b}:".encode() for b in banks)
    psids: list[tuple[str, str]] = []
    producer = kafka.producer(settings)
    await producer.start()
    try:
        while not stop.is_set():
            if not psids or rng.random() < 0.01:  # the live feed grants consents as it goes
                held = await consent.newest(settings, codec, ours)
                psids = sorted({(c["psid"], c["page_id"]) for c in held.values() if c})
            if psids:
                psid, page = rng.choice(psids)
                sent_at = int(time.time() * 1000)
                message = {
                    "mid": f"m.fault-{seed}-{len(talked.said)}",
                    "psid": psid,
                    "page_id": page,
                    "text": rng.choice(QUESTIONS),
                    "payload": None,
                    "sent_at": sent_at,
                }
                frame = codec.encode("passerelle.InboundMessage", message)
                await producer.send_and_wait(INBOUND, frame, psid.encode())
                talked.said.append((psid, sent_at))
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


@dataclass
class ConversationReport:
    asked: int = 0
    """Questions written."""
    routed: int = 0
    """Requests read on the accounts' streams (one per question of a linked psid)."""
    answered: int = 0
    missing: int = 0
    duplicates: int = 0
    leaks: int = 0
    """Answers carrying data the consent held when the request was read did not allow."""
    unasked: int = 0
    """Answers to no question read on an account's stream."""
    repeats: int = 0
    conflicting: int = 0

    @property
    def exact(self) -> bool:
        wrong = (self.missing, self.duplicates, self.leaks, self.unasked, self.conflicting)
        return not any(wrong)

    @property
    def at_least_once(self) -> bool:
        return not any((self.missing, self.leaks, self.unasked, self.conflicting))

    def line(self) -> str:
        return (
            f"questions {self.asked}: routed {self.routed}, answered {self.answered}, "
            f"missing {self.missing}, duplicates {self.duplicates}, leaks {self.leaks}, "
            f"unasked {self.unasked}, repeats {self.repeats}, conflicting {self.conflicting}"
        )


async def check_conversation(
    settings: Settings,
    codec: Any,
    app_id: str,
    banks: list[str],
    talked: Talked,
    repeats_allowed: bool = False,
) -> ConversationReport:
    ours = tuple(f"{b}:".encode() for b in banks)
    stream = [
        r
        for r in await read_all(settings, f"{app_id}.accounts")
        if r.key == TICK_KEY or (r.key or b"").startswith(ours)
    ]
    allowed: dict[Asked, bool] = {}
    expected_from_stream(codec, stream, allowed)
    askers = {psid for psid, _ in talked.said}
    answers = [
        n
        for n in (
            codec.decode("passerelle.Notification", r.value)
            for r in await read_all(settings, "messenger.notifications.v1")
        )
        if n["kind"] == "RESPONSE" and n["psid"] in askers and n["bank_id"] in banks
    ]
    report = compare_conversation(allowed, answers, repeats_allowed)
    report.asked = len(talked.said)
    return report


def compare_conversation(
    allowed: dict[Asked, bool], answers: list[dict[str, Any]], repeats_allowed: bool = False
) -> ConversationReport:
    """The answers written against the questions the model read on the streams."""
    report = ConversationReport(routed=len(allowed))
    if repeats_allowed:
        answers, report.repeats, report.conflicting = without_repeats(
            answers, lambda n: n["notification_id"]
        )
    by_question: dict[Asked, list[dict[str, Any]]] = {}
    for n in answers:
        by_question.setdefault((n["psid"], n["occurred_at"], n["bank_id"]), []).append(n)
    for question, may_show in allowed.items():
        got = by_question.get(question, [])
        report.answered += bool(got)
        report.missing += not got
        report.duplicates += max(0, len(got) - 1)
        shown = any(n["data"][f] is not None for n in got for f in DATA_FIELDS)
        report.leaks += shown and not may_show
    report.unasked = sum(len(got) for q, got in by_question.items() if q not in allowed)
    return report
