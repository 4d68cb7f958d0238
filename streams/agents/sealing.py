"""Dead letters of an account, sealed with the account's data key; erasure shreds them.

A dead letter is kept 14 days, longer than a consent may last after it ends, and
Kafka cannot delete it record by record. So the accounts stage writes every dead
letter that names an account (ingest passes them on the per-account stream,
`stream.DeadLetter`): its bytes sealed with the account's data key
(`streams.crypto`), keyed by the account's keyed hash, never its number. The
headers stay clear and say what an operator needs (reason, error, source
coordinates, `size` of the sealed bytes, `sealed`: the algorithm).

The data key lives wrapped in the `keys` table (and so in the changelog), keyed by
the account's hash. Erasing the account deletes it in the same batch: its dead
letters become unreadable at once. A key made for an account that holds no
consent (a bank wrote about an account nobody consented for) is deleted by the
scan once its dead letters have expired (`KEY_UNUSED_MS`).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice

from aiokafka.structs import ConsumerRecord

from streams import catalog, crypto
from streams.agents.stored import KEYS_CURSOR, KEYS_TABLE, META_TABLE
from streams.core.spec import Emit
from streams.core.store import PartitionStore
from streams.crypto import decode_key, encode_key
from streams.stream import Dead, Source, dead_letter_headers

KEY_UNUSED_MS = 15 * 86_400_000
"""A key of an account without a consent is deleted this long after its last use:
the DLQ's retention (14 days) and a day's margin."""


class Sealer:
    """Seals an account's dead letters; forgets its key when the account is erased."""

    def __init__(self, keyring: crypto.Keyring, account_of: Callable[[bytes], str]) -> None:
        """`account_of`: the keyed hash of the account a per-account stream key names."""
        self.keyring, self.account_of = keyring, account_of

    def data_key(self, store: PartitionStore, account: str, now: int) -> bytes:
        """The account's data key, made on first use; its last use is kept (the sweep's
        clock), and a key wrapped under a retired KEK is wrapped again under the active."""
        raw = store.get(KEYS_TABLE, account.encode())
        if raw is None:
            key, wrapped = self.keyring.new_data_key(account)
        else:
            wrapped, _ = decode_key(raw)
            key = self.keyring.unwrap(wrapped, account)
            if crypto.Keyring.kid_of(wrapped) != self.keyring.active:
                wrapped = self.keyring.wrap(key, account)
        store.put(KEYS_TABLE, account.encode(), encode_key(wrapped, now))
        return key

    def dead_letter(
        self,
        store: PartitionStore,
        key: bytes,
        record: ConsumerRecord[bytes, bytes],
        dead: Dead,
        now: int,
    ) -> Emit:
        """`record`'s bytes sealed for the account `key` names, keyed by its hash, with
        why and where in the clear headers: the coordinates it carries (its bank
        topic's), else its own."""
        account = self.account_of(key)
        source = Source.carried(record) or Source.of(record)
        sealed = crypto.seal(self.data_key(store, account, now), record.value or b"", account)
        headers = (
            *dead_letter_headers(dead.reason, dead.detail, source),
            ("sealed", crypto.ALGORITHM.encode()),
        )
        return Emit(catalog.DLQ, account.encode(), sealed, headers=headers)

    def shred(self, store: PartitionStore, key: bytes) -> None:
        """Forget the data key of the account `key` names: its dead letters are shredded
        (an account that has none writes no tombstone)."""
        account = self.account_of(key).encode()
        if store.get(KEYS_TABLE, account) is not None:
            store.delete(KEYS_TABLE, account)

    @staticmethod
    def unused(raw: bytes, now: int) -> bool:
        """Whether a key (of an account without a consent) has outlived its letters."""
        return decode_key(raw)[1] + KEY_UNUSED_MS <= now

    def sweep(self, store: PartitionStore, now: int, count: int) -> None:
        """Delete the data keys that sealed nothing for `KEY_UNUSED_MS`: every dead letter
        they sealed has expired. `count` keys, on from where the last sweep stopped (the
        accounts stage sweeps once a minute: a pass over N keys takes N / count minutes)."""
        cursor = store.get(META_TABLE, KEYS_CURSOR)
        read = list(islice(store.items(KEYS_TABLE, after=cursor), count))
        for account, raw in read:
            if self.unused(raw, now):
                store.delete(KEYS_TABLE, account)
        if len(read) == count:
            store.put(META_TABLE, KEYS_CURSOR, read[-1][0])
        elif cursor is not None:  # the pass is done: the next starts from the first key
            store.delete(META_TABLE, KEYS_CURSOR)
