"""A topic as plain data: its name, key and value, who writes and reads it, what it may
hold of a customer, and its broker configuration, with the bound that configuration
puts on how long a record remains (what an erasure receipt promises). The catalog
(`streams.catalog`) makes every topic of the contract from these."""

from __future__ import annotations

from dataclasses import dataclass, field

HOUR_MS = 3_600_000

# An erased key is gone from a compacted topic within this bound (the cleaner compacts
# a segment at most this long after the write): what a receipt promises, at some cost.
MAX_COMPACTION_LAG_MS = HOUR_MS
# Segments roll this often so the cleaner can reach a tombstone (never the active one).
COMPACTED_SEGMENT_MS = HOUR_MS
# Tombstones themselves are dropped this long after compaction.
DELETE_RETENTION_MS = HOUR_MS


@dataclass(frozen=True)
class Topic:
    """One topic: its name, what its key and value are, and its broker configuration."""

    name: str
    key: str
    value_subjects: tuple[str, ...]
    """The registry subjects its values may have (empty for non-Avro values)."""
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    writers: str = ""
    readers: str = ""
    holds: str = ""
    """What of a customer's account it may hold, in clear: what an erasure receipt says
    remains there until `removal_bound_ms` after the erasure."""
    shredded: bool = False
    """What it holds of an account is sealed with the account's data key: unreadable once
    the account is erased (`agents.sealing`)."""
    purged_ms: int | None = None
    """One of our own streams: a record is deleted this long after its stage committed it."""

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")

    @property
    def removal_bound_ms(self) -> int:
        """How long a record once read (compacted: an erased key) may remain in the topic."""
        if self.purged_ms is not None:
            return self.purged_ms
        if self.compacted:
            return int(self.config["max.compaction.lag.ms"]) + int(
                self.config["delete.retention.ms"]
            )
        return int(self.config["retention.ms"])


def deleting(retention_ms: int) -> dict[str, str]:
    """Broker config of a topic whose records expire after `retention_ms`."""
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}


def compacting() -> dict[str, str]:
    """Broker config of a compacted topic whose erased keys disappear within a bound."""
    return {
        "cleanup.policy": "compact",
        "max.compaction.lag.ms": str(MAX_COMPACTION_LAG_MS),
        "segment.ms": str(COMPACTED_SEGMENT_MS),
        "delete.retention.ms": str(DELETE_RETENTION_MS),
    }
