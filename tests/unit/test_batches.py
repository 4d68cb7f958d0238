"""Record placement and whole batches: keys go where Kafka's default partitioner puts them,
and records that must be written whole are one record batch or refused."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.memory_records import MemoryRecords

from streams.core.batches import BatchWriter, TooLarge, partition_of
from streams.core.spec import Emit


def test_keys_land_where_the_default_partitioner_puts_them() -> None:
    """For psids, account keys and hashes, and several partition counts, the same partition
    as aiokafka's DefaultPartitioner (murmur2, as the Java client)."""
    keys = [f"psid-{n}".encode() for n in range(500)]
    keys += [f"banque-alpine:FR76{n:020d}".encode() for n in range(500)]
    keys += [b"", b"\x00tick", bytes(range(256))]
    for partitions in (1, 3, 4, 12):
        every = list(range(partitions))
        assert [partition_of(k, partitions) for k in keys] == [
            DefaultPartitioner()(k, every, every) for k in keys
        ]


def test_golden_placements_from_kafkas_own_hash_values() -> None:
    """Kafka's UtilsTest pins murmur2("21") = -973932308, ("foobar") = -790332482 and
    ("a-little-bit-long-string") = -985981536; positive-masked, modulo 12 partitions."""
    keys = (b"21", b"foobar", b"a-little-bit-long-string")
    assert [partition_of(k, 12) for k in keys] == [0, 6, 8]
    assert [partition_of(k, 4) for k in keys] == [0, 2, 0]


def test_whole_puts_each_partitions_records_in_one_record_batch() -> None:
    """Changelog-like records for two partitions become exactly two record batches, each
    holding every record of its partition in order, however far past the producer's
    usual batch size they go."""
    writer = BatchWriter(cast(Any, None))
    records = [Emit("cl", b"k%d" % n, bytes(1000), partition=n % 2) for n in range(600)]
    built = writer.whole(records, max_bytes=1024 * 1024)
    assert [(tp.partition, builder.record_count()) for tp, builder in built] == [(0, 300), (1, 300)]
    for tp, builder in built:
        builder.close()
        encoded = MemoryRecords(bytes(builder._build()))  # the bytes the broker would get
        batch = encoded.next_batch()
        assert [r.key for r in batch] == [b"k%d" % n for n in range(tp.partition, 600, 2)]
        assert encoded.next_batch() is None  # one record batch, nothing after it


def test_whole_refuses_records_that_do_not_fit_one_record_batch() -> None:
    """Rather than split them over two record batches (one could be written without the
    other), `whole` raises TooLarge."""
    writer = BatchWriter(cast(Any, None))
    records = [Emit("cl", b"k%d" % n, bytes(1000), partition=0) for n in range(20)]
    with pytest.raises(TooLarge):
        writer.whole(records, max_bytes=8 * 1024)
