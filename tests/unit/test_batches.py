"""Record placement: our batches put a key where Kafka's default partitioner would."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from streams.core.batches import partition_of


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
