"""Conversation: the psid stream in; questions to the accounts, and a few replies, out.

A question is per psid, state is per account. This stage reads the psid
stream (`<app_id>.psids`, keyed by psid): the accounts stage's `link` and
`unlink` records keep, per psid, the accounts whose consent names it (the
index), and each customer's message, in order with them, becomes one
`request` per linked account on the per-account stream. The accounts stage
answers each from its own state, through the gate (`streams.agents.answers`).
A delivery report that the psid is unreachable goes to each linked account
the same way; the accounts stage mutes the one whose consent it names.

What this stage answers itself carries no bank data:

- HELP, and a text it does not understand (HELP at most once per
  `HELP_EVERY_MS` for that psid; never an echo of what was written);
- a psid no consent names: one reply a day saying how to link an account;
- a psid over its budget (`RATE_BUDGET` messages per `RATE_WINDOW_MS`): no
  reply, counted.

Inbound outcomes are counted per page (`passerelle_inbound_total`) so that
`in = answered + refused + rate_limited + dlq` (ingest counts in and dlq).
What a customer wrote never reaches this stage: ingest read its intent.

The index and the budgets are in the `psids` table (deleted when a psid's last
account is unlinked); psids no consent names are remembered in `strangers`
under the day, and a partition forgets earlier days at its first record of a
new day.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import takewhile
from typing import Any, TypedDict, cast

from aiokafka.structs import ConsumerRecord

from streams import model, stream
from streams.agents.dlq import dead_letter
from streams.catalog import Catalog
from streams.core.spec import RELAXED_FETCH_WAIT_MS, Emit, StageSpec
from streams.core.store import PartitionStore
from streams.metrics import Metrics
from streams.rules.controls import help_reply, unlinked
from streams.rules.ingest import PROCESSING_ERROR
from streams.rules.intents import Intent
from streams.rules.replies import Asked, To

PSIDS_TABLE = "psids"
STRANGERS_TABLE = "strangers"
DAY_MS = 86_400_000
RATE_WINDOW_MS = 60_000
RATE_BUDGET = 10
HELP_EVERY_MS = 3_600_000
DEFAULT_LOCALE = "fr-FR"


class Psid(TypedDict):
    """What the conversation keeps of one psid."""

    accounts: dict[str, str]
    """Linked accounts (per-account stream keys) and the locale of each one's consent."""
    window: list[int]
    """[start, count]: messages since the start of the current rate window."""
    help_at: int | None
    """When this psid was last sent HELP for a text not understood."""


class Conversation:
    """The conversation stage's handler."""

    def __init__(
        self,
        cat: Catalog,
        metrics: Metrics,
        notification: Callable[[model.Notification], Emit],
    ) -> None:
        self.metrics = metrics
        self.notification = notification
        self.psid_stream = cat.psid_stream().name
        self.account_stream = cat.account_stream().name
        self.changelog = cat.changelog("conversation").name

    def spec(self) -> StageSpec:
        return StageSpec(
            "conversation",
            self.handle,
            topics=(self.psid_stream,),
            changelog=self.changelog,
            purge=True,
            on_error=self.dead_letter,
            fetch_wait_ms=RELAXED_FETCH_WAIT_MS,  # a person reads the answer: 0.1 s is not seen
        )

    def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], exc: Exception, _: PartitionStore
    ) -> list[Emit]:
        self.metrics.child(self.metrics.dlq, "inbound", PROCESSING_ERROR).inc()
        detail = f"{type(exc).__name__} in the conversation stage"
        # what a psid stream record holds (links name accounts) is not kept: it is derived
        return [dead_letter(record, PROCESSING_ERROR, detail, carried=True, kept=False)]

    def handle(self, record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> list[Emit]:
        psid, read = stream.read_psid(record)
        now = record.timestamp
        entry = _load(store, psid)
        emits: list[Emit] = []
        match read:
            case stream.Link(account=account, locale=locale):
                entry["accounts"][account] = locale
            case stream.Unlink(account=account):
                entry["accounts"].pop(account, None)
            case stream.Inbound():
                emits = self.inbound(store, psid, entry, read, now)
            case stream.Unreachable(consent_id=consent_id):  # to each account: theirs to judge
                value, headers = consent_id.encode(), (("kind", stream.KIND_UNREACHABLE),)
                emits = [
                    Emit(self.account_stream, account.encode(), value, headers=headers)
                    for account in sorted(entry["accounts"])
                ]
        _save(store, psid, entry)  # what changed of the psid (nothing kept once unlinked)
        return emits

    def inbound(
        self,
        store: PartitionStore,
        psid: bytes,
        entry: Psid,
        message: stream.Inbound,
        now: int,
    ) -> list[Emit]:
        page, intent = message.page_id, cast(Intent | None, message.intent)
        if not entry["accounts"]:
            return self.stranger(store, psid, message, now)
        if not _within_budget(entry, now):
            return self.counted(page, "rate_limited", [])
        locale = entry["accounts"][min(entry["accounts"])]
        asked = Asked(message.mid, psid.decode(), page, intent or "HELP", message.sent_at, locale)
        if intent is None or intent == "HELP":
            said = entry["help_at"]
            if intent is None and said is not None and now - said < HELP_EVERY_MS:
                return self.counted(page, "rate_limited", [])  # HELP was said a moment ago
            entry["help_at"] = now if intent is None else said
            reply = help_reply(asked, To("", "", "", "", locale), now)
            return self.counted(page, "answered", [self.notification(reply)])
        value = stream.encode_request(asked)
        headers = (("kind", stream.KIND_REQUEST),)
        requests = [
            Emit(self.account_stream, account.encode(), value, headers=headers)
            for account in sorted(entry["accounts"])
        ]
        return self.counted(page, "answered", requests)

    def stranger(
        self, store: PartitionStore, psid: bytes, message: stream.Inbound, now: int
    ) -> list[Emit]:
        """A message from a psid no consent names: one reply a day, then silence."""
        day = str(now // DAY_MS).encode()
        _forget_before(store, day)
        key = day + b"\x00" + psid
        if store.get(STRANGERS_TABLE, key) is not None:
            return self.counted(message.page_id, "refused", [])
        store.put(STRANGERS_TABLE, key, b"1")
        page, locale = message.page_id, DEFAULT_LOCALE
        asked = Asked(message.mid, psid.decode(), page, "HELP", message.sent_at, locale)
        reply = self.notification(unlinked(asked, now))
        return self.counted(message.page_id, "refused", [reply])

    def counted(self, page: str, outcome: str, emits: list[Emit]) -> list[Emit]:
        self.metrics.child(self.metrics.inbound, page, outcome).inc()
        return emits


def _within_budget(entry: Psid, now: int) -> bool:
    """Count one message against the psid's budget; False once it is spent."""
    start, count = entry["window"]
    if now - start >= RATE_WINDOW_MS:
        start, count = now, 0
    entry["window"] = [start, count + 1]
    return count < RATE_BUDGET


def _forget_before(store: PartitionStore, day: bytes) -> None:
    """Forget strangers of earlier days: they sort before today's (same-width day numbers),
    so this reads no further than the first of today's."""
    today = day + b"\x00"
    keys = (k for k, _ in store.items(STRANGERS_TABLE))
    for key in list(takewhile(lambda k: not k.startswith(today), keys)):
        store.delete(STRANGERS_TABLE, key)


def _load(store: PartitionStore, psid: bytes) -> Psid:
    raw = store.get(PSIDS_TABLE, psid)
    if raw is None:
        return {"accounts": {}, "window": [0, 0], "help_at": None}
    data: Any = json.loads(raw)
    return data  # type: ignore[no-any-return]  # written by _save


def _save(store: PartitionStore, psid: bytes, entry: Psid) -> None:
    """Keep what is known of a psid while an account is linked to it; else nothing."""
    if entry["accounts"]:
        store.put(PSIDS_TABLE, psid, json.dumps(entry, separators=(",", ":")).encode())
    elif store.get(PSIDS_TABLE, psid) is not None:
        store.delete(PSIDS_TABLE, psid)
