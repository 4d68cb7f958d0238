"""When an account next has time-driven work: the tick's scan reads accounts only then.

A tick's scan does three things to an account (`agents.accounts.Accounts.scan`):
ends a VALID consent once `valid_until` has passed (`consent.expire`), releases
the digests of local days that have ended (`accounts.due_digests`), and links a
consent held from before the conversation. `next_due` is the first instant at
which one of them would do something; before it, a scan of the account changes
nothing and says nothing (`tests/unit/test_due.py` checks that against the rules
themselves).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from streams.rules.accounts import State
from streams.rules.consent import Held


def next_due(held: Held, state: State | None) -> int | None:
    """The first instant (epoch ms) at which a scan would change the account; None if
    none would until a record changes it (no consent held, or one that neither expires
    nor has an undigested day)."""
    consent = held.consent
    if consent is None:
        return None
    if not held.linked:
        return 0  # held from before the conversation: link it at the next scan
    dues: list[int] = []
    if consent["status"] == "VALID":
        dues.append(consent["valid_until"])
    if state is not None and state["days"]:
        dues.append(day_end(min(state["days"]), consent["timezone"]))
    return min(dues) if dues else None


@lru_cache(maxsize=4096)
def day_end(day: str, timezone: str) -> int:
    """The first instant (epoch ms) whose local date in `timezone` is after `day`
    (ISO): the local midnight that ends it. Where a DST change skips that midnight,
    the first instant of the next day, as the clock reads then."""
    after = dt.date.fromisoformat(day) + dt.timedelta(days=1)
    return int(dt.datetime.combine(after, dt.time(), ZoneInfo(timezone)).timestamp() * 1000)
