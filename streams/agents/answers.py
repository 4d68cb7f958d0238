"""Answers: a customer's question or control, for one account, in the account's order.

The accounts stage hands each `request` record of the per-account stream here.
It is answered from the account's own state, with the consent held *now*, so
a question read after a revocation on the account's stream gets a refusal,
never data. Every answer is a RESPONSE released by the one gate
(`streams.rules.outputs.release`, with what the question `asks`):

- a question (BALANCE, RECENT, MONTH) gets its answer, or a refusal that says
  what is not shared: the consent does not grant it, is not VALID, or names
  another psid than the one who asked;
- a control (STOP, PAUSE, RESUME, DISCREET on/off) needs a consent that names
  the asker; it is kept with that consent (`rules.consent.choose`) and
  confirmed. STOP also asks the bank to end the consent (`consents.requests.v1`);
- a recipient the delivery worker reported unreachable (`unreachable`) is
  muted for the consent it was sent under;
- an answer that would arrive after Messenger's 24-hour window is not written;
- a question is answered once per account: its `mid` is kept for the window
  (the `asked` table), so a request written twice (the conversation stage's
  at-least-once replay) gets no second, possibly different, answer.

The account's links to psids are also decided here (`psid_links`): each
consent change tells the conversation stage which psid may ask about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from streams import catalog, model, stream
from streams.agents.stored import (
    load_asked,
    load_held,
    load_state,
    save_asked,
    save_held,
)
from streams.codec import Codec
from streams.core.spec import Emit
from streams.core.store import PartitionStore
from streams.redact import KeyedHasher
from streams.rules.consent import Change, Held, Mute, choose, unreachable
from streams.rules.controls import confirmation
from streams.rules.intents import QUESTIONS
from streams.rules.notify import TTL_MS
from streams.rules.outputs import release
from streams.rules.replies import Asked, To, answer, refusal, to_account

CHANNEL = "MESSENGER"


class Answers:
    """The accounts stage's answers to requests, with what it needs to write them."""

    def __init__(
        self,
        codec: Codec,
        hasher: KeyedHasher,
        notification: Callable[[bytes, model.Notification], list[Emit]],
    ) -> None:
        """`notification` writes an answer for an account (with its Disclosure, counted),
        as every notification is."""
        self.codec = codec
        self.hasher = hasher
        self.notification = notification

    def handle(self, key: bytes, asked: Asked, store: PartitionStore, now: int) -> list[Emit]:
        """One request for the account `key`, at `now` (the request's record time)."""
        window = TTL_MS["RESPONSE"]
        if now >= asked.sent_at + window:  # Messenger's window has closed
            return []
        answered = load_asked(store, key)
        if asked.mid in answered:  # written twice (an at-least-once replay): answered once
            return []
        answered = {mid: at for mid, at in answered.items() if at > now - window}
        save_asked(store, key, {**answered, asked.mid: asked.sent_at})
        held = load_held(store, key)
        bank, _, account = key.decode().partition(":")
        mine = held.consent if held.consent and held.consent["psid"] == asked.psid else None
        to = to_account(bank, account, self.hasher.account(bank, account), mine, asked.locale)
        if asked.intent in QUESTIONS:
            needs = QUESTIONS[asked.intent]
            granted = release("RESPONSE", held, now, asks=needs, to=asked.psid)
            if not granted.allowed:
                return self.notification(key, refusal(asked, to, needs, granted.withheld, now))
            state = load_state(store, key)  # an account without activity: an empty summary
            return self.notification(key, answer(asked, to, granted, state, now))
        if mine is None:  # a control needs a consent that names the asker
            return self.notification(key, refusal(asked, to, None, "NO_CONSENT", now))
        return self.control(key, asked, held, to, store, now)

    def control(
        self, key: bytes, asked: Asked, held: Held, to: To, store: PartitionStore, now: int
    ) -> list[Emit]:
        """STOP, PAUSE, RESUME, DISCREET on/off: kept with the consent, then confirmed.
        Once stopped, only another consent lifts it: PAUSE and RESUME say so."""
        assert held.consent is not None  # `handle` checked that the consent names the asker
        stopped = held.muted == "STOP"
        muted: Mute | None = held.muted
        discreet = held.discreet
        emits: list[Emit] = []
        if asked.intent == "STOP":
            muted = "STOP"
            emits.append(self.withdrawal(key, held.consent, asked.sent_at))
        elif asked.intent in ("PAUSE", "RESUME") and not stopped:
            muted = "PAUSE" if asked.intent == "PAUSE" else None
        elif asked.intent in ("DISCREET_ON", "DISCREET_OFF"):
            discreet = asked.intent == "DISCREET_ON"
        change = choose(held, muted, discreet)
        if change.outcome != "ignored":
            save_held(store, key, change.held)
        still_stopped = stopped and asked.intent in ("PAUSE", "RESUME")
        emits += self.notification(key, confirmation(asked, to, still_stopped, now))
        return emits

    def unreachable(self, key: bytes, consent_id: str, store: PartitionStore) -> list[Emit]:
        """The delivery worker could not reach the recipient of a notification sent under
        `consent_id`: the account's consent, if it is still that one, is muted
        (`UNREACHABLE`) until RESUME or another consent. Nothing is written to nobody."""
        change = unreachable(load_held(store, key), consent_id)
        if change.outcome != "ignored":
            save_held(store, key, change.held)
        return []

    def withdrawal(self, key: bytes, consent: model.Consent, asked_at: int) -> Emit:
        """The customer's STOP, passed on to the bank that owns the consent."""
        request: model.WithdrawalRequest = {
            "consent_id": consent["consent_id"],
            "bank_id": consent["bank_id"],
            "asked_at": asked_at,
            "channel": CHANNEL,
        }
        return Emit(catalog.REQUESTS, key, self.codec.encode(model.WITHDRAWAL_REQUEST, request))


def psid_links(psid_stream: str, key: bytes, change: Change) -> tuple[Held, list[Emit]]:
    """What one consent change tells the conversation stage: the psid of the consent it
    ended (or replaced) may no longer ask about the account; the psid of the consent
    now held may (its locale refreshed on every update). With the Held to keep: marked
    `linked` when a link was written (a consent held since before the conversation
    existed is not, and the scan links it)."""
    emits = []
    ended = change.ended_consent
    if ended is not None:
        emits.append(_psid(psid_stream, ended["psid"], stream.KIND_UNLINK, key))
    held = change.held.consent
    if held is None:
        return change.held, emits
    link = stream.encode_link(stream.Link(key.decode(), held["locale"]))
    emits.append(_psid(psid_stream, held["psid"], stream.KIND_LINK, link))
    return replace(change.held, linked=True), emits


def _psid(psid_stream: str, psid: str, kind: bytes, value: bytes) -> Emit:
    return Emit(psid_stream, psid.encode(), value, headers=(("kind", kind),))
