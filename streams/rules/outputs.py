"""The one gate every output passes: may this kind go out now, and with which fields?

Every record that leaves for Messenger is released here, at the moment it is
emitted, against the consent held then (DESIGN.md, "One gate for every
output"). `release` says whether the kind may go and which fields of `data`
the consent's permissions unlock; `redact` blanks every other field. The
notification's text is rendered from the redacted data afterwards
(`streams.rules.notify`), so a text can never say what its data may not carry.

What each kind needs, and what each permission unlocks (the table, with
examples, is docs/consent-gate.md): `NEEDS` and `UNLOCKS` below. An alert says
that something happened; what happened (amount, merchant) needs TRANSACTIONS,
the balance needs BALANCES, a digest's figures need SUMMARIES and the
consent's `daily_digest`. CONSENT_ENDED goes to the consent that just ended,
whatever its status, with the masked account only.

A RESPONSE answers the customer's question with what that question needs
(`asks`: BALANCE → BALANCES, …) and goes only to the consent's own psid. What
the customer chose in the chat applies here too: muted (STOP, PAUSE) withholds
every pushed kind (`MUTED_BY_PSU`; `UNREACHABLE` when the delivery worker
reported the recipient unreachable) but not an answer nor CONSENT_ENDED;
discreet unlocks nothing but the masked account, in every kind: discreet is the
customer's DISCREET on or off from the chat if they chose, else the consent's
`display` (Consent v2: FULL or DISCREET; FULL for a v1 record).

"VALID" means: the consent held has status VALID, `now` is before its
`valid_until`, and no unreadable consent record for the account arrived since
it (fail closed). The masked account (`•••• 0189`) is always allowed: it is the
customer's own shorthand, not bank data.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.model import Consent, NotificationData, NotificationKind, Permission, WithheldReason
from streams.rules.consent import Held, muted_reason, window_verdict

ALWAYS = frozenset({"account_masked"})
UNLOCKS: dict[Permission, frozenset[str]] = {
    "TRANSACTIONS": frozenset({"amount_minor", "currency", "merchant_name", "category"}),
    "BALANCES": frozenset({"balance_minor", "currency"}),
    "SUMMARIES": frozenset(),  # unlocks `digest`, for the digest only (below)
    "ALERTS": frozenset(),  # an alert says that something happened, not what
}
NEEDS: dict[NotificationKind, frozenset[Permission]] = {
    "TRANSACTION": frozenset({"TRANSACTIONS"}),
    "LARGE_TRANSACTION": frozenset({"ALERTS"}),
    "LOW_BALANCE": frozenset({"ALERTS", "BALANCES"}),
    "DAILY_DIGEST": frozenset({"SUMMARIES"}),
    "CONSENT_ENDED": frozenset(),
    "RESPONSE": frozenset(),  # and what the question `asks` (below)
}
MUTABLE: frozenset[NotificationKind] = frozenset(
    {"TRANSACTION", "LARGE_TRANSACTION", "LOW_BALANCE", "DAILY_DIGEST"}
)
"""What the customer's STOP or PAUSE withholds: what we push, not what they ask."""
DIGEST_FIELDS = frozenset({"digest", "currency"})


@dataclass(frozen=True)
class Release:
    """The gate's answer: the consent to send under and the fields it unlocks, or why not."""

    consent: Consent | None
    fields: frozenset[str] = ALWAYS
    withheld: WithheldReason | None = None

    @property
    def allowed(self) -> bool:
        return self.withheld is None and self.consent is not None


def release(
    kind: NotificationKind,
    held: Held,
    now_ms: int,
    booked_at: int | None = None,
    asks: Permission | None = None,
    to: str | None = None,
) -> Release:
    """May `kind` go out under what the account holds at `now_ms`? `booked_at` is the
    booking time of the transaction an event kind is about (None otherwise); a
    RESPONSE says what its question `asks` and which psid it goes `to`."""
    if held.unreadable:
        return Release(None, withheld="NO_CONSENT")
    consent = held.consent
    if kind == "CONSENT_ENDED":  # sent for the consent that just ended, carrying nothing
        return Release(consent) if consent is not None else Release(None, withheld="NO_CONSENT")
    verdict = window_verdict(held, now_ms, booked_at)
    if verdict is not None:
        return Release(None, withheld=verdict)
    assert consent is not None  # window_verdict withholds when nothing is held
    if kind == "RESPONSE" and to != consent["psid"]:  # an answer goes to its consent's psid
        return Release(None, withheld="NO_CONSENT")
    muted = muted_reason(held)
    if muted is not None and kind in MUTABLE:
        return Release(None, withheld=muted)
    permissions = frozenset(consent["permissions"])
    needs = NEEDS[kind] | ({asks} if asks is not None else set())
    if not needs <= permissions:
        return Release(None, withheld="PERMISSION")
    if kind == "DAILY_DIGEST" and not consent["daily_digest"]:
        return Release(None, withheld="PERMISSION")
    if held.shows_discreetly:
        return Release(consent, ALWAYS)
    if kind == "DAILY_DIGEST" or asks == "SUMMARIES":
        return Release(consent, ALWAYS | DIGEST_FIELDS)
    fields = ALWAYS.union(*(UNLOCKS[p] for p in permissions))
    return Release(consent, fields)


def redact(data: NotificationData, fields: frozenset[str]) -> NotificationData:
    """`data` with every field that `fields` does not unlock set to None."""
    return {name: value if name in fields else None for name, value in data.items()}  # type: ignore[return-value]  # same keys as NotificationData
