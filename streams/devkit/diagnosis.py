"""What a failed pipeline check shows: which stream records went undecided or were
decided twice differently, and whether the stream holds twins.

A Decision names its source record (topic, partition, offset) and the time of the
stream record it decided (`decided_at`), not the stream record itself. Two stream
copies of one source written in the same millisecond (twins) would share that
identity, and their Decisions could not be told apart: `twins` counts them.
Coordinates and outcomes only, never an account or an amount.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from streams.devkit.checker import TICK_KEY

SOURCE_HEADERS = ("source-topic", "source-partition", "source-offset")


def twins(stream: list[Any]) -> int:
    """How many account-stream transactions share their source and timestamp with an
    earlier one."""
    seen = Counter((source, record.timestamp) for record, source in _transactions(stream))
    return sum(n - 1 for n in seen.values())


def _transactions(stream: list[Any]) -> Iterator[tuple[Any, tuple[str, int, int]]]:
    """The stream's transaction records, each with its source (topic, partition, offset)."""
    for record in stream:
        headers = dict(record.headers)
        if record.key != TICK_KEY and headers.get("kind", b"transaction") == b"transaction":
            topic, partition, offset = (headers.get(h, b"").decode() for h in SOURCE_HEADERS)
            yield record, (topic, int(partition or -1), int(offset or -1))


def undecided_or_conflicting(
    stream: list[Any], decided: list[dict[str, Any]], most: int = 5
) -> list[str]:
    """A few stream transactions no Decision names (by source and time), and a few whose
    Decisions disagree: where they sit on the stream, and what was decided of their
    source record at any time. Coordinates and outcomes only (no account, no amount)."""
    by_identity: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    by_source: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for d in decided:
        source = (d["source_topic"], d["source_partition"], d["source_offset"])
        by_identity[(*source, d["decided_at"])].append(d)
        by_source[source].append(d)
    undecided: list[str] = []
    conflicting: list[str] = []
    for record, source in _transactions(stream):
        mine = by_identity.get((*source, record.timestamp), [])
        elsewhere = sorted((d["decided_at"], d["outcome"], d["reason"]) for d in by_source[source])
        where = f"stream {record.partition}@{record.offset} t={record.timestamp} of {source}"
        if not mine and len(undecided) < most:
            undecided.append(f"undecided: {where}; its source decided {elsewhere}")
        elif len({(d["outcome"], d["reason"]) for d in mine}) > 1 and len(conflicting) < most:
            outcomes = [(d["outcome"], d["reason"]) for d in mine]
            conflicting.append(f"conflicting: {where}: {outcomes}")
    return undecided + conflicting
