"""What the accounts stage keeps in its store, and the bytes it keeps it as.

Tables of a partition's store (and so of its changelog), each keyed by the
per-account stream's key `<bank_id>:<account_id>`, except `keys` and `meta`:

    consents  the gate's `Held` (a live consent, an ended marker, unreadable;
              the customer's mute and discreet choices; whether its psid is linked)
    accounts  the account's summary (`rules.accounts.State`), erased with consent
    asked     the chat's questions answered for the account in the last 24 h (their
              `mid`s), so a question written twice is answered once; erased with it
    keys      an account's data key, wrapped, keyed by the account's keyed hash
              (`agents.sealing`): its dead letters are sealed with it; erased with it
    meta      where the partition's scan of consents is (`LAST_SCAN`, `SCAN_CURSOR`),
              when it next has an account due (`NEXT_SCAN`), and the sweep of
              unused keys (`KEYS_CURSOR`)

Each value has one encode/decode pair here. The bytes are JSON, and they must
stay what they are: a worker restores its state from changelog records that
earlier versions wrote (`tests/unit/test_stored.py` pins them). They are written
with the standard library's `json` (those bytes) and read with `orjson`, 3-4x
faster: a tick's scan reads two values per account, a batch two per account it has.
What orjson refuses and `json` reads (a lone surrogate's escape, NaN) is read by
`json`, as before. Where they would differ, nothing is written here: orjson reads an
integer past 64 bits as a float, and amounts and times are integers far inside
(ingest refuses an amount past 10^12 minor units).
"""

from __future__ import annotations

import json
from typing import Any, cast

import orjson

from streams.core.store import PartitionStore
from streams.crypto import KEYS_TABLE as KEYS_TABLE  # kept by the sealer, read by `dlq show`
from streams.model import Consent
from streams.rules.accounts import State, new_state
from streams.rules.consent import Ended, Held, Mute
from streams.rules.due import next_due

CONSENTS_TABLE = "consents"
ACCOUNTS_TABLE = "accounts"
ASKED_TABLE = "asked"
META_TABLE = "meta"
LAST_SCAN = b"last-scan"
"""The minute of tick time (an integer, as text) the last scan started in."""
SCAN_CURSOR = b"scan-cursor"
"""The last consents key a scan under way has read."""
KEYS_CURSOR = b"keys-cursor"
"""The last keys key the sweep of unused data keys has read."""
NEXT_SCAN = b"next-scan"
"""The earliest instant (epoch ms, as text) at which an account of the partition may
have time-driven work (`rules.due.next_due`): a scan starts only then. Absent (a store
from before it was kept): a scan starts at the next minute."""


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # valid for `json`: a lone surrogate's escape, NaN
        return json.loads(raw)


def _dumps(value: Any) -> bytes:
    """Compact JSON, by orjson: a summary of 50 transactions in 7.8 µs where `json` took
    91 (`timeit`, 2026-12-07), and a summary is written with every batch that touches
    its account. What orjson refuses (a lone surrogate, an integer past 64 bits), `json`
    writes, as it always did. Text is UTF-8, not `json`'s escapes: both read the same."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


def encode_held(held: Held) -> bytes:
    ended = held.ended.__dict__ if held.ended else None
    record: dict[str, Any] = {"consent": held.consent, "ended": ended}
    if held.unreadable:  # only then: what was stored before the flag reads the same
        record["unreadable"] = True
    if held.muted is not None:  # likewise the customer's choices from the chat
        record["muted"] = held.muted
    if held.discreet is not None:  # chosen in the chat: on, or off against the consent's
        record["discreet"] = held.discreet
    if held.linked:
        record["linked"] = True
    return json.dumps(record).encode()


def decode_held(raw: bytes) -> Held:
    data = _loads(raw)
    ended = Ended(**data["ended"]) if data["ended"] else None
    # The types as strings: `Mute | None` built at run time hashes its Literal at each
    # call (0.9 µs by `timeit`; a scan reads an account in ~19 µs).
    consent = cast("Consent | None", data["consent"])
    muted = cast("Mute | None", data.get("muted"))
    flags = (data.get("unreadable", False), muted, data.get("discreet"))
    return Held(consent, ended, *flags, linked=data.get("linked", False))


def encode_state(state: State) -> bytes:
    return _dumps(state)


def decode_state(raw: bytes) -> State:
    return cast(State, _loads(raw))


def load_held(store: PartitionStore, key: bytes) -> Held:
    held: Held | None = store.get_object(CONSENTS_TABLE, key, decode_held)
    return held if held is not None else Held()


def save_held(store: PartitionStore, key: bytes, held: Held) -> None:
    """Keep what the account holds; nothing at all (a tombstone forgot it): delete its key.
    The partition's next scan comes no later than the account is due."""
    if held == Held():
        store.delete(CONSENTS_TABLE, key)
    else:
        store.put(CONSENTS_TABLE, key, encode_held(held))
        scan_by(store, next_due(held, find_state(store, key)))


def load_state(store: PartitionStore, key: bytes) -> State:
    """The account's summary, decoded once per batch (see `PartitionStore.get_object`)."""
    state = find_state(store, key)
    return state if state is not None else new_state()


def find_state(store: PartitionStore, key: bytes) -> State | None:
    """The account's summary, or None if it has none (never had, or erased)."""
    state: State | None = store.get_object(ACCOUNTS_TABLE, key, decode_state)
    return state


def save_state(store: PartitionStore, key: bytes, state: State) -> None:
    """Keep the changed summary; it is encoded once, when the batch is written. The
    partition's next scan comes no later than the account is due (a new local day's
    digest)."""
    store.put_object(ACCOUNTS_TABLE, key, state, encode_state)
    scan_by(store, next_due(load_held(store, key), state))


def next_scan(store: PartitionStore) -> int | None:
    """When the partition's next scan is due (`NEXT_SCAN`); None if not known."""
    at: int | None = store.get_object(META_TABLE, NEXT_SCAN, int)
    return at


def scan_by(store: PartitionStore, due: int | None, *, start: bool = False) -> None:
    """The partition's next scan comes no later than `due` (None: no bound). `start`: a
    scan starts, and from now on only what it reads and what is written bounds the next.
    Not known yet (a store from before `NEXT_SCAN`): a scan comes at the next minute."""
    if due is None:
        return
    at = next_scan(store)
    if start or (at is not None and due < at):
        store.put_object(META_TABLE, NEXT_SCAN, due, _encode_int)


def _encode_int(value: int) -> bytes:
    return str(value).encode()


def load_asked(store: PartitionStore, key: bytes) -> dict[str, int]:
    """The account's answered questions: `mid` → when it was sent."""
    raw = store.get(ASKED_TABLE, key)
    return cast(dict[str, int], _loads(raw)) if raw is not None else {}


def save_asked(store: PartitionStore, key: bytes, asked: dict[str, int]) -> None:
    store.put(ASKED_TABLE, key, _dumps(asked))
