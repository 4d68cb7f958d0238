"""Per-account summaries: what a forwarded transaction changes, and what it should say.

Pure functions over a `State` (one per account, kept in the accounts table
and erased when consent ends; `streams/agents/stored.py` encodes it):

- a `transaction_id` seen within `DEDUPE_WINDOW_MS` is a duplicate;
- a PENDING and the BOOKED that settles it (`pending_transaction_id`) are one
  purchase: counted once (the BOOKED only corrects the amount), notified once;
- a REVERSED undoes what it names, in the day and month it was counted;
- an event booked more than `STALE_AFTER_MS` ago updates the summary and
  notifies nothing;
- LOW_BALANCE fires when the balance crosses below the threshold, once per
  crossing (it re-arms when the balance is back at or above it);
- days are local days of the consent's time zone; a day's digest is due at
  the first tick after it ends, once;
- the `RECENT_KEPT` latest transactions by booking time are kept for the
  chat's "last transactions" (a BOOKED takes its PENDING's place, a REVERSED
  takes what it undoes out).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict
from zoneinfo import ZoneInfo

from streams.model import CategoryTotal, Consent, DigestData, Transaction
from streams.rules.categories import category
from streams.rules.safe_text import shown_or_none

DAY_MS = 86_400_000
# Duplicates of a transaction id are recognised within the ingest topics'
# retention: a bank's retry cannot come later than that.
DEDUPE_WINDOW_MS = 7 * DAY_MS
# A backfill older than this must not flood the customer.
STALE_AFTER_MS = 2 * DAY_MS
# Digested days remembered, so a late event cannot trigger a second digest.
DIGESTED_KEPT = 7
# Transactions kept for the chat's "last transactions".
RECENT_KEPT = 5

Side = Literal["spent", "received"]


class Totals(TypedDict):
    """Money moved in a day or a month, by side and category, in minor units."""

    spent: dict[str, int]
    received: dict[str, int]
    count: int


class Counted(TypedDict):
    """What a transaction counted, so that a BOOKED or a REVERSED can correct it."""

    amount: int
    category: str
    day: str
    """The local day it was counted in (ISO)."""


class Recent(TypedDict):
    """One of the latest transactions, as the chat shows it."""

    id: str
    amount: int
    merchant: str | None
    category: str
    booked_at: int


class State(TypedDict):
    """One account's summary."""

    balance: int | None
    below: bool
    """The balance is below the low-balance threshold (LOW_BALANCE fired)."""
    days: dict[str, Totals]
    """Local days (ISO) not yet digested."""
    month: str | None
    month_totals: Totals
    seen: dict[str, int]
    """Transaction ids within the dedupe window, with their booked_at."""
    seen_since: NotRequired[int]
    """The earliest booked_at in `seen`, so that most transactions learn in one
    comparison that nothing left the window (absent in older states and while `seen`
    is empty)."""
    pending: dict[str, Counted]
    counted: dict[str, Counted]
    digested: list[str]
    """The last DIGESTED_KEPT digested days."""
    currency: str | None
    recent: NotRequired[list[Recent]]
    """The RECENT_KEPT latest transactions, newest first (absent in older states)."""


def new_state() -> State:
    return {
        "balance": None,
        "below": False,
        "days": {},
        "month": None,
        "month_totals": _totals(),
        "seen": {},
        "pending": {},
        "counted": {},
        "digested": [],
        "currency": None,
    }


def _totals() -> Totals:
    return {"spent": {}, "received": {}, "count": 0}


@dataclass(frozen=True)
class Effect:
    """What one transaction does beyond the state: whether and how to notify."""

    duplicate: bool = False
    stale: bool = False
    notify: bool = False
    """A TRANSACTION notification (not for a BOOKED settling a known PENDING)."""
    large: bool = False
    low_balance: bool = False


def local_date(ms: int, timezone: str) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(timezone)).date()


def apply(state: State, tx: Transaction, consent: Consent, now_ms: int) -> Effect:
    """Fold one forwarded transaction into `state` (mutated) and say what to notify."""
    tx_id = tx["transaction_id"]
    if tx_id in state["seen"]:
        return Effect(duplicate=True)
    _prune(state, now_ms)
    state["seen"][tx_id] = tx["booked_at"]
    state["seen_since"] = min(state.get("seen_since", tx["booked_at"]), tx["booked_at"])
    state["currency"] = tx["currency"]
    stale = tx["booked_at"] < now_ms - STALE_AFTER_MS
    day = local_date(tx["booked_at"], consent["timezone"])
    cat = category(tx["mcc"], tx["channel"])
    notify = True
    if tx["status"] == "BOOKED" and tx["pending_transaction_id"] in state["pending"]:
        pending = state["pending"].pop(tx["pending_transaction_id"])
        _count(
            state,
            dt.date.fromisoformat(pending["day"]),
            pending["category"],
            pending["amount"],
            abs(tx["amount_minor"]) - abs(pending["amount"]),
            0,
        )
        state["counted"][tx_id] = Counted(
            amount=tx["amount_minor"], category=pending["category"], day=pending["day"]
        )
        notify = False
    elif tx["status"] == "REVERSED":
        target_id = tx["reversed_transaction_id"] or ""
        target = state["counted"].pop(target_id, None) or state["pending"].pop(target_id, None)
        if target is not None:
            _count(
                state,
                dt.date.fromisoformat(target["day"]),
                target["category"],
                target["amount"],
                -abs(target["amount"]),
                -1,
            )
    else:
        _count(state, day, cat, tx["amount_minor"], abs(tx["amount_minor"]), 1)
        entry = Counted(amount=tx["amount_minor"], category=cat, day=day.isoformat())
        (state["pending"] if tx["status"] == "PENDING" else state["counted"])[tx_id] = entry
    _remember(state, tx, cat)
    crossed = _balance(state, tx, consent)
    if stale:
        return Effect(stale=True)
    large = (
        notify
        and tx["status"] != "REVERSED"
        and consent["large_amount_minor"] is not None
        and abs(tx["amount_minor"]) >= consent["large_amount_minor"]
    )
    return Effect(notify=notify, large=large, low_balance=crossed)


def _count(state: State, day: dt.date, cat: str, original: int, change: int, count: int) -> None:
    """Move the side of `original`'s sign (spent for a debit, received for a credit) by
    `change` (a magnitude, negative to take back) in the day's and the month's totals."""
    side: Side = "spent" if original < 0 else "received"
    key = day.isoformat()
    if key not in state["digested"]:
        _add(state["days"].setdefault(key, _totals()), side, cat, change, count)
    month = key[:7]
    if state["month"] is None or month > state["month"]:
        state["month"], state["month_totals"] = month, _totals()
    if month == state["month"]:
        _add(state["month_totals"], side, cat, change, count)


def _add(totals: Totals, side: Side, cat: str, change: int, count: int) -> None:
    totals[side][cat] = totals[side].get(cat, 0) + change
    totals["count"] += count


def _remember(state: State, tx: Transaction, cat: str) -> None:
    """Keep `tx` among the latest transactions (or take out what it settles or undoes)."""
    gone = {tx["pending_transaction_id"], tx["reversed_transaction_id"]} - {None}
    recent = [r for r in state.get("recent", []) if r["id"] not in gone]
    if tx["status"] != "REVERSED":
        entry = Recent(
            id=tx["transaction_id"],
            amount=tx["amount_minor"],
            merchant=shown_or_none(tx["merchant_name"]),  # shown in the chat: made safe
            category=cat,
            booked_at=tx["booked_at"],
        )
        recent.append(entry)
    recent.sort(key=lambda r: (r["booked_at"], r["id"]), reverse=True)
    state["recent"] = recent[:RECENT_KEPT]


def month_summary(state: State) -> DigestData | None:
    """This month's totals (the month of the latest transaction counted), if any."""
    month = state["month"]
    return _digest(month, state["month_totals"]) if month is not None else None


def _balance(state: State, tx: Transaction, consent: Consent) -> bool:
    """Take the new balance; True if it just crossed below the low-balance threshold."""
    balance = tx["balance_after_minor"]
    if balance is None:
        return False
    state["balance"] = balance
    threshold = consent["low_balance_minor"]
    below = threshold is not None and balance < threshold
    crossed = below and not state["below"]
    state["below"] = below
    return crossed


def _prune(state: State, now_ms: int) -> None:
    """Forget ids seen before the dedupe window (and what they counted). Most calls
    find nothing to forget, and then rebuild nothing (`counted` only holds seen ids).
    The window's earliest id is kept (`seen_since`): a busy account's window holds
    thousands, and finding their earliest took ~21 µs a transaction at 1 600."""
    seen = state["seen"]
    if not seen:
        return
    if "seen_since" not in state:  # a state from before it was kept
        state["seen_since"] = min(seen.values())
    horizon = now_ms - DEDUPE_WINDOW_MS
    if state["seen_since"] >= horizon:
        return
    kept = {k: v for k, v in seen.items() if v >= horizon}
    state["seen"] = kept
    state["counted"] = {k: v for k, v in state["counted"].items() if k in kept}
    if kept:
        state["seen_since"] = min(kept.values())
    else:
        state.pop("seen_since", None)


def due_digests(state: State, consent: Consent, now_ms: int) -> list[DigestData]:
    """The digests of local days that have ended with activity, once each.

    Mutates `state` only by taking ended days out of `days` (and remembering
    the digested ones), so a caller can tell a change by the count of days.
    """
    today = local_date(now_ms, consent["timezone"]).isoformat()
    due = []
    for day in sorted(state["days"]):
        if day >= today:
            continue
        totals = state["days"].pop(day)
        if totals["count"] > 0:
            due.append(_digest(day, totals))
            state["digested"] = [*state["digested"], day][-DIGESTED_KEPT:]
    return due


def _digest(day: str, totals: Totals) -> DigestData:
    categories = sorted(set(totals["spent"]) | set(totals["received"]))
    by_category: list[CategoryTotal] = [
        {
            "category": c,
            "spent_minor": totals["spent"].get(c, 0),
            "received_minor": totals["received"].get(c, 0),
        }
        for c in categories
    ]
    return {
        "local_date": day,
        "spent_minor": sum(totals["spent"].values()),
        "received_minor": sum(totals["received"].values()),
        "transaction_count": totals["count"],
        "by_category": by_category,
    }
