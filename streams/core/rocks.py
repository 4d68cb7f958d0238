"""RocksDB as every store of a process is opened: one memory budget for them all.

However many partitions a worker holds (owned, or standby copies), its stores
share one memtable budget and one block cache, so its memory does not grow
with the partitions it is given.
"""

from __future__ import annotations

from functools import cache

from rocksdict import (
    BlockBasedOptions,
    Cache,
    MemtableFactory,
    Options,
    WriteBufferManager,
    WriteOptions,
)

# The shared budget. RocksDB's defaults (64 MiB memtables, two of them, per
# store) would let each partition hold up to 128 MiB.
MEMTABLE_BUDGET_BYTES = 64 * 1024 * 1024
MEMTABLE_BYTES = 16 * 1024 * 1024
BLOCK_CACHE_BYTES = 32 * 1024 * 1024
# The MANIFEST (RocksDB's log of its files) rolls over at this size (store.py says why).
MAX_MANIFEST_BYTES = 1024 * 1024


@cache
def _shared() -> tuple[WriteBufferManager, Cache]:
    return WriteBufferManager(MEMTABLE_BUDGET_BYTES, False), Cache(BLOCK_CACHE_BYTES)


def memory() -> tuple[int, int]:
    """Bytes the process's stores hold in memory together: their memtables (written,
    not yet flushed) and their block cache. Both fill and empty with the load (a flush
    frees a memtable): a share of the worker's RSS that moves from minute to minute."""
    memtables, blocks = _shared()
    return memtables.get_usage(), blocks.get_usage()


def options(bulk: bool = False) -> Options:
    """How each store is opened: the shared budget, and what its tables keep where.

    `bulk`: for a store that is only written, many records at a time (a restore),
    until it is flushed and opened again. Its memtable appends each write and sorts
    them once, when it is flushed (RocksDB's vector memtable): 0.33 µs a record where
    the skiplist, which keeps every write in order for reads, took 1.45-1.63 (a
    scratch write of 1.6 M records into four stores, 2026-12-07). A read through it
    sorts it: ~4 ms at 100 000 records, against 6-7 µs. Nothing may read it."""
    memtables, blocks = _shared()
    opened = Options(raw_mode=True)
    if bulk:
        opened.set_memtable_factory(MemtableFactory.vector())
        opened.set_allow_concurrent_memtable_write(False)  # only the skiplist can
    opened.create_if_missing(True)
    opened.set_write_buffer_size(MEMTABLE_BYTES)
    opened.set_write_buffer_manager(memtables)
    table = BlockBasedOptions()
    table.set_block_cache(blocks)
    # Index and filter blocks stay with their open table files, outside the cache:
    # in a 32 MiB cache shared with data blocks they were evicted and read again,
    # and a point read at 1 M accounts cost 63 µs instead of 11 (a scratch run of
    # this store's access pattern, 4 partitions, 200 000 transactions a round).
    # They are about 1 % of the data. Bloom filters (10 bits a key, ~1 % false
    # positives) spare a read the files that lack its key: 7.3 µs.
    table.set_cache_index_and_filter_blocks(False)
    table.set_bloom_filter(10, False)
    opened.set_block_based_table_factory(table)
    opened.set_max_manifest_file_size(MAX_MANIFEST_BYTES)
    return opened


def unlogged() -> WriteOptions:
    """Writes that skip RocksDB's write-ahead log: for a bulk load only, whose store is
    flushed when the load ends. A store killed meanwhile opens as of its last flush:
    whole batches (a WriteBatch lands in one memtable, and memtables are flushed in
    order), their checkpoint with them, and the restore reads on from there. A logged
    write after unlogged ones could outlive them in a crash (its WAL replayed, their
    memtable lost), so a store flushes before it logs again (`PartitionStore.loading`)."""
    written = WriteOptions()
    # A property, though rocksdict's stub declares a method (test_store checks the effect).
    written.disable_wal = True  # type: ignore[method-assign,assignment]
    return written
