"""The consent gate: which consent an account holds, and whether it lets a transaction through.

Pure functions, no I/O. The rules (DESIGN.md, "Consent gate"):

- A consent update replaces the one held only if its `updated_at` is newer
  than every version this account has seen: out-of-order updates are ignored.
- REVOKED_BY_PSU, EXPIRED and TERMINATED_BY_TPP end the consent; so does a
  tombstone, and so does a tick at or past `valid_until`. Ending erases the
  account's state; what remains is an *ended marker* (consent id and
  version), so an older VALID arriving late cannot revive it. The marker lasts
  until the consent authority's tombstone for the account: the authority then
  holds nothing for it either, so nothing is kept (not even the marker, whose
  key names the account) and what it writes next starts afresh.
- A consent is identified by `consent_id` and its recipient (`psid`,
  `page_id`): a newer record for the account naming another one *replaces*
  the consent held, which ends (reason REPLACED: erased, told, receipted)
  before the new one starts with empty state. Nothing gathered under one
  consent ever reaches another's recipient.
- RECEIVED and REJECTED suspend: every output stops at once (the gate wants
  VALID), the state is kept for the same consent (docs/decisions.md).
- A consent record that cannot be read marks the account *unreadable*: every
  output is withheld until a newer readable record arrives (fail closed).
- What the customer chose in the chat (`muted` by STOP or PAUSE, `discreet`)
  belongs to the consent held: a newer version of the same consent keeps it,
  and it goes with the consent when that ends or is replaced. STOP lasts until
  another consent (the bank is asked to end this one); PAUSE until RESUME.
- A recipient the delivery worker could not reach (blocked the Page, or no
  such psid) is muted likewise (`UNREACHABLE`) for the consent it was sent
  under, until RESUME or another consent: nothing is pushed to nobody.
- A transaction is forwarded only if the consent held now is VALID, now is
  before `valid_until`, the transaction was booked before `valid_until` and
  inside `transaction_from`/`transaction_to`, and the permission the output
  needs is granted. Anything else withholds: **fail closed**.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from streams.model import Consent, ErasureReason, Permission, Transaction, WithheldReason

Mute = Literal["STOP", "PAUSE", "UNREACHABLE"]
MUTE_REASONS: dict[Mute, WithheldReason] = {
    "STOP": "MUTED_BY_PSU",
    "PAUSE": "MUTED_BY_PSU",
    "UNREACHABLE": "UNREACHABLE",
}
"""Why an output of a muted account is withheld (the Decision's reason)."""
ENDING_STATUSES: frozenset[str] = frozenset({"REVOKED_BY_PSU", "EXPIRED", "TERMINATED_BY_TPP"})


@dataclass(frozen=True)
class Ended:
    """What remains of an ended consent: enough to refuse a late, older update."""

    consent_id: str
    version: int
    reason: ErasureReason


@dataclass(frozen=True)
class Held:
    """The gate's state for one account: a live consent, an ended marker, or neither."""

    consent: Consent | None = None
    ended: Ended | None = None
    unreadable: bool = False
    """A consent record for the account could not be read since: withhold everything."""
    muted: Mute | None = None
    """The customer stopped or paused the notifications from the chat, or could not be
    reached there (the delivery worker's report)."""
    discreet: bool | None = None
    """The customer's DISCREET on (True) or off (False) from the chat; None: not chosen,
    the consent's `display` decides (`shows_discreetly`)."""
    linked: bool = False
    """The conversation knows this consent's psid (a link was written for it)."""

    @property
    def shows_discreetly(self) -> bool:
        """Whether outputs carry the kind, the masked account and the day only: the
        customer's choice from the chat if any, else the consent's `display` (v2)."""
        if self.discreet is not None:
            return self.discreet
        return self.consent is not None and self.consent.get("display") == "DISCREET"

    @property
    def consent_id(self) -> str | None:
        """The id of the consent held, or of the one that ended."""
        if self.consent is not None:
            return self.consent["consent_id"]
        return self.ended.consent_id if self.ended is not None else None

    @property
    def version(self) -> int | None:
        """The newest consent version this account has seen."""
        if self.consent is not None:
            return self.consent["updated_at"]
        return self.ended.version if self.ended is not None else None


@dataclass(frozen=True)
class Change:
    """The outcome of one consent event: the new state and what it ended, if anything."""

    held: Held
    outcome: Literal["updated", "ignored", "ended"]
    """updated: the state changed; ended: a live consent ended (erase, tell, receipt)."""
    ended_consent: Consent | None = None
    """The consent that this event ended (its state must be erased)."""
    marker: Ended | None = None
    """How it ended (for the receipt): its id, the version that ended it, the reason."""


def same_consent(a: Consent, b: Consent) -> bool:
    """One consent, one recipient: the same id, psid and page."""
    return (a["consent_id"], a["psid"], a["page_id"]) == (b["consent_id"], b["psid"], b["page_id"])


def apply_update(held: Held, update: Consent | None) -> Change:
    """Apply one consents.v1 record (None: a tombstone) to what the account holds."""
    if update is None:  # the authority's erasure: the account is forgotten, marker and all
        change = _end(held, "TOMBSTONE", held.version)
        if change.outcome == "ended":
            return replace(change, held=Held())
        return Change(Held(), "ignored" if held == Held() else "updated")
    seen = held.version
    if seen is not None and update["updated_at"] <= seen:
        return Change(held, "ignored")
    live = held.consent
    if update["status"] in ENDING_STATUSES:
        reason: ErasureReason = update["status"]  # type: ignore[assignment]  # narrowed by ENDING_STATUSES
        ended = Ended(update["consent_id"], update["updated_at"], reason)
        if live is None:  # nothing live to end: keep the marker only
            return Change(Held(None, ended), "updated")
        return Change(Held(None, ended), "ended", live, ended)
    if live is not None and not same_consent(live, update):
        replaced = Ended(live["consent_id"], live["updated_at"], "REPLACED")
        return Change(Held(update, None), "ended", live, replaced)
    if live is not None:  # a newer version of the consent held: the customer's choices stay
        return Change(Held(update, None, muted=held.muted, discreet=held.discreet), "updated")
    return Change(Held(update, None), "updated")


def mark_unreadable(held: Held) -> Change:
    """A consent record for the account could not be read: withhold until a newer one."""
    if held.unreadable:
        return Change(held, "ignored")
    return Change(replace(held, unreadable=True), "updated")


def choose(held: Held, muted: Mute | None, discreet: bool | None) -> Change:
    """The customer's choice from the chat, kept with the consent held (none: ignored)."""
    if held.consent is None or (held.muted, held.discreet) == (muted, discreet):
        return Change(held, "ignored")
    return Change(replace(held, muted=muted, discreet=discreet), "updated")


def muted_reason(held: Held) -> WithheldReason | None:
    """Why the customer's choice (or an unreachable recipient) withholds, if it does."""
    return MUTE_REASONS[held.muted] if held.muted is not None else None


def unreachable(held: Held, consent_id: str) -> Change:
    """The delivery worker reported that a notification sent under `consent_id` cannot
    reach its recipient: mute the consent held if it is that one (a STOP stays a STOP)."""
    if held.consent is None or held.consent["consent_id"] != consent_id:
        return Change(held, "ignored")
    if held.muted == "STOP":
        return Change(held, "ignored")
    return choose(held, "UNREACHABLE", held.discreet)


def expire(held: Held, now_ms: int) -> Change:
    """A tick: a VALID consent whose `valid_until` has passed ends as EXPIRED."""
    consent = held.consent
    if consent is None or consent["status"] != "VALID" or now_ms < consent["valid_until"]:
        return Change(held, "ignored")
    return _end(held, "EXPIRED", consent["updated_at"])


def _end(held: Held, reason: ErasureReason, version: int | None) -> Change:
    """End the live consent, if any, keeping a marker at `version`."""
    consent = held.consent
    if consent is None:
        return Change(held, "ignored")
    marker = Ended(
        consent["consent_id"], consent["updated_at"] if version is None else version, reason
    )
    return Change(Held(None, marker), "ended", consent, marker)


@dataclass(frozen=True)
class Verdict:
    forwarded: bool
    reason: WithheldReason | None = None


FORWARD = Verdict(True)


def window_verdict(held: Held, now_ms: int, booked_at: int | None) -> WithheldReason | None:
    """Why nothing may go out under what the account holds at `now_ms` (about a
    transaction booked at `booked_at`, if any), or None: the consent is VALID, live,
    readable, and covers the booking."""
    consent = held.consent
    if held.unreadable:
        return "NO_CONSENT"
    if consent is None:
        if held.ended is not None:
            return "EXPIRED" if held.ended.reason == "EXPIRED" else "REVOKED"
        return "NO_CONSENT"
    if consent["status"] == "RECEIVED":
        return "NOT_YET_VALID"
    if consent["status"] != "VALID":
        return "NO_CONSENT"
    if now_ms >= consent["valid_until"]:
        return "EXPIRED"
    if booked_at is None:
        return None
    if booked_at >= consent["valid_until"]:
        return "EXPIRED"
    start, end = consent["transaction_from"], consent["transaction_to"]
    if (start is not None and booked_at < start) or (end is not None and booked_at > end):
        return "OUT_OF_RANGE"
    return None


def gate(held: Held, tx: Transaction, now_ms: int, needs: Permission) -> Verdict:
    """May `tx` produce an output that needs `needs`, under what the account holds now?"""
    reason = window_verdict(held, now_ms, tx["booked_at"])
    if reason is not None:
        return Verdict(False, reason)
    assert held.consent is not None  # window_verdict withholds when nothing is held
    if needs not in held.consent["permissions"]:
        return Verdict(False, "PERMISSION")
    return FORWARD
