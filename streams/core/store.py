"""State of one input partition: RocksDB on disk, a changelog topic in Kafka.

The changelog is the truth; RocksDB is a cache of it. A batch's writes go to
an in-memory overlay first, are sent to the changelog inside the batch's
transaction, and reach RocksDB only after that transaction committed, in one
write batch together with the changelog offset they bring the store up to.
So after any crash the store is a prefix of the committed changelog, and
restoring is reading the changelog from the store's checkpoint to its end.

A batch whose changes are on their way to the changelog is sealed (`seal`):
the next batch is handled meanwhile, over it, and `commit` applies sealed
batches in the order they were sealed.

A handler that reads and rewrites the same value many times in a batch (an
account's summary, once per transaction) can keep it decoded: `get_object`
decodes a value once per batch and `put_object` encodes it once, when the
batch's changes are taken. An account that appears forty times in a batch
costs one decode and one encode instead of forty of each.

Keys are namespaced by table (`<table>\\x00<key>`), so one changelog serves
every table of a stage. Reserved keys start with `\\x00`.

A deleted key stays in RocksDB's files (an erased account's number, in the old
table file and the tombstone) until a compaction reaches it, and nothing bounds
when that happens by itself. So the store compacts the range of each key it
deleted (its own batches', or a restore's or standby's tombstones), in a thread
of its own (rocksdict releases the GIL), at most once every `COMPACT_EVERY_S`:
the files forget an erased key within about a minute of the erasure, and a closed
store's files at once. The MANIFEST may log a deleted key as the boundary of a table
file; it rolls over at `rocks.MAX_MANIFEST_BYTES` of such edits, and that log goes.
"""

from __future__ import annotations

import contextlib
import heapq
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from rocksdict import Options, Rdict, WriteBatch

from streams.core.rocks import options, unlogged

# Where the store has read the changelog up to (the next offset to read).
CHECKPOINT_KEY = b"\x00changelog-offset"
# The next input offset of the partition, as of the state the changelog holds;
# written to the changelog with every batch.
INPUT_OFFSET_KEY = b"\x00input-offset"
_SEPARATOR = b"\x00"
_DELETED = None
COMPACT_EVERY_S = 60.0
# Past this many deleted keys in a window, one compaction of the range they span
# costs less than one per key (about 0.2 s each at a million accounts).
MAX_RANGES = 64


def table_key(table: str, key: bytes) -> bytes:
    return table.encode() + _SEPARATOR + key


def split_key(stored: bytes) -> tuple[str, bytes]:
    table, _, key = stored.partition(_SEPARATOR)
    return table.decode(), key


def _open(path: Path, opened: Options) -> Rdict:
    """The store at `path`, opened with these options. Its table options (the shared block
    cache among them) belong to its column family: rocksdict opens an existing store's
    with those its OPTIONS file recorded, and a block cache of its own, unless told."""
    return Rdict(str(path), options=opened, column_families={"default": opened})


class PartitionStore:
    """RocksDB for one partition, with the batch overlay that is not yet committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(path, options())
        raw = self._db.get(CHECKPOINT_KEY)
        self._checkpoint = int(raw) if raw is not None else 0
        self._pending: dict[bytes, bytes | None] = {}
        self._objects: dict[bytes, tuple[Any, Callable[[Any], bytes] | None]] = {}
        """Values this batch decoded (`get_object`), with how to encode them if they
        changed (`put_object`), or None if they did not."""
        self._sealed: deque[dict[bytes, bytes | None]] = deque()
        """Batches handled and on their way to the changelog, oldest first."""
        self._erased: set[bytes] = set()
        """Keys deleted since the last compaction started."""
        self._compacting: threading.Thread | None = None
        self._compacted_at = float("-inf")

    @property
    def checkpoint(self) -> int:
        """The changelog offset this store has applied up to (as written with it)."""
        return self._checkpoint

    @property
    def input_offset(self) -> int | None:
        """The next input offset of the state held, if any batch was ever committed."""
        raw = self._db.get(INPUT_OFFSET_KEY)
        return int(raw) if raw is not None else None

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._get(table_key(table, key))

    def _get(self, stored: bytes) -> bytes | None:
        changed = self._objects.get(stored)
        if changed is not None and changed[1] is not None:
            return changed[1](changed[0])
        return self._read(stored)

    def _read(self, stored: bytes) -> bytes | None:
        """The value as bytes: this batch's, a sealed batch's (newest first), or RocksDB's."""
        if stored in self._pending:
            return self._pending[stored]
        for sealed in reversed(self._sealed):
            if stored in sealed:
                return sealed[stored]
        value: bytes | None = self._db.get(stored)
        return value

    def put(self, table: str, key: bytes, value: bytes) -> None:
        stored = table_key(table, key)
        self._objects.pop(stored, None)
        self._pending[stored] = value

    def delete(self, table: str, key: bytes) -> None:
        stored = table_key(table, key)
        self._objects.pop(stored, None)
        self._pending[stored] = _DELETED

    def get_object(self, table: str, key: bytes, decode: Callable[[bytes], Any]) -> Any | None:
        """The value decoded (None if there is none), decoded once per batch: every
        later call in the batch returns the same object. Change it only to
        `put_object` it back; the store holds it for the rest of the batch."""
        stored = table_key(table, key)
        if stored in self._objects:
            return self._objects[stored][0]
        raw = self._read(stored)
        if raw is None:
            return None
        value = decode(raw)
        self._objects[stored] = (value, None)
        return value

    def put_object(
        self, table: str, key: bytes, value: Any, encode: Callable[[Any], bytes]
    ) -> None:
        """Set the key to this object, encoded once, when the batch's changes are taken
        (`pending`, `items`, `commit`), however often it is put until then."""
        self._objects[table_key(table, key)] = (value, encode)

    def _encode_objects(self) -> None:
        """Encode the objects put since, into the batch's changes (they are decoded
        again on their next `get_object`)."""
        for stored, (value, encode) in self._objects.items():
            if encode is not None:
                self._pending[stored] = encode(value)
        self._objects.clear()

    def items(self, table: str, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value of one table (those after `after`, if given), in key
        order: committed ones with this batch's changes over them. The order does not
        depend on which changes are committed yet, so a replay cut into other batches
        walks the same keys."""
        self._encode_objects()
        prefix = table.encode() + _SEPARATOR
        start = prefix + after if after is not None else prefix
        overlay: dict[bytes, bytes | None] = {}
        for changes in (*self._sealed, self._pending):  # newer changes over older ones
            overlay.update(changes)
        pending = sorted((k, v) for k, v in overlay.items() if k.startswith(prefix) and k >= start)
        committed = (
            (cast(bytes, k), v)  # raw mode: keys are bytes
            for k, v in self._db.items(from_key=start)
        )
        merged = heapq.merge(
            ((k, 0, v) for k, v in pending),  # a pending change sorts before its committed value
            ((k, 1, v) for k, v in committed),
        )
        previous = start if after is not None else None  # `after` itself is not listed
        for stored, _, value in merged:
            if not stored.startswith(prefix):  # past the table, and so is every later key
                break
            if stored == previous:  # the committed value under a pending change
                continue
            previous = stored
            if value is not None:  # a pending None is a delete
                yield stored[len(prefix) :], value

    def estimated_keys(self) -> int:
        """RocksDB's own estimate of the keys held (every table, reserved keys too)."""
        estimate: int | None = self._db.property_int_value("rocksdb.estimate-num-keys")
        return estimate or 0

    def pending(self) -> dict[bytes, bytes | None]:
        """This batch's changes, by stored key (None: deleted)."""
        self._encode_objects()
        return self._pending

    def set_input_offset(self, offset: int) -> None:
        """Record, with this batch's changes, the next input offset they bring the state to.

        It goes to the changelog and, once committed, to RocksDB like any change:
        a store whose checkpoint is at the changelog's end needs no restore, so
        its own input offset must be as new as its checkpoint. It is the batch's last
        change (the objects put are encoded before it)."""
        self._encode_objects()
        self._pending[INPUT_OFFSET_KEY] = str(offset).encode()

    def seal(self) -> None:
        """This batch's changes are on their way to the changelog: later writes belong
        to the next batch, and read over these until they are committed."""
        self._encode_objects()
        self._sealed.append(self._pending)
        self._pending = {}

    def discard(self) -> None:
        """Forget this batch's changes (not sealed)."""
        self._pending = {}
        self._objects.clear()

    def abandon(self) -> None:
        """Forget every change not committed: this batch's and the sealed ones (the
        partition is re-opened from the changelog)."""
        self.discard()
        self._sealed.clear()

    def commit(self, changelog_next_offset: int) -> None:
        """Apply the oldest sealed batch (this batch, if none is sealed), now committed
        to the changelog up to that offset."""
        if not self._sealed:
            self.seal()
        self._write(self._sealed.popleft().items(), changelog_next_offset)

    def apply_changelog(
        self, records: Iterable[tuple[bytes, bytes | None]], next_offset: int
    ) -> None:
        """Apply restored changelog records (a None value is a tombstone)."""
        self._write(records, next_offset)

    def _write(self, records: Iterable[tuple[bytes, bytes | None]], checkpoint: int) -> None:
        """One atomic RocksDB write: the records and the changelog offset they reach."""
        batch = WriteBatch(raw_mode=True)
        for stored, value in records:
            if value is None:
                batch.delete(stored)
                self._erased.add(stored)
            else:
                batch.put(stored, value)
        batch.put(CHECKPOINT_KEY, str(checkpoint).encode())
        self._db.write(batch)
        self._checkpoint = checkpoint
        self._compact_erased()

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Opened for a bulk load while the block runs (`rocks.options(bulk=True)`: a
        write costs a fifth, a read through the memtable sorts it), then flushed and
        opened as before. Meanwhile only the changelog is applied (`apply_changelog`), and
        not through the write-ahead log (`rocks.unlogged`: killed, the store opens as of
        its last flush, a whole batch and its checkpoint)."""
        self._reopen(options(bulk=True))
        self._db.set_write_options(unlogged())
        try:
            yield
        finally:
            self._db.flush(wait=True)  # the loaded memtable sorted and written: the only copy
            self._reopen(options())

    def _reopen(self, opened: Options) -> None:
        if self._compacting is not None:
            self._compacting.join()
        self._db.close()
        self._db = _open(self.path, opened)

    def _compact_erased(self) -> None:
        """Start compacting the deleted keys' ranges, unless one ran in the last
        COMPACT_EVERY_S or still runs (the keys wait for the next write after)."""
        busy = self._compacting is not None and self._compacting.is_alive()
        if busy or not self._erased or time.monotonic() < self._compacted_at + COMPACT_EVERY_S:
            return
        keys, self._erased = sorted(self._erased), set()
        self._compacted_at = time.monotonic()
        self._compacting = threading.Thread(
            target=self._compact, args=(keys,), name="store-compaction", daemon=True
        )
        self._compacting.start()

    def _compact(self, keys: list[bytes]) -> None:
        """Each key's own range (the files holding it are rewritten); many keys (a restore
        read a changelog's tombstones): the one range from the first to the last."""
        if len(keys) > MAX_RANGES:
            self._db.compact_range(keys[0], keys[-1] + b"\x00")
            return
        for key in keys:
            self._db.compact_range(key, key + b"\x00")

    def close(self, compact: bool = True) -> None:
        """Close, once the deleted keys' ranges are compacted (those that waited for the
        next window too: a closed store's files forget what was erased)."""
        self.abandon()
        if self._compacting is not None:
            self._compacting.join()
        if compact:
            self._compact(sorted(self._erased))
        self._erased = set()
        self._db.close()

    def wipe(self) -> None:
        """Close and delete the local files (the changelog restores them)."""
        self.close(compact=False)
        shutil.rmtree(self.path, ignore_errors=True)
