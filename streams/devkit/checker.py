"""The independent checker: what a run should have produced, against what it did.

It reads the inputs and every output with read_committed, recomputes the
expected results with its own small reference model (it imports none of the
stages or rules it checks), and counts the differences:

- missing: an expected output that is not there;
- duplicates: an output seen more than once (`conflicting`: a repeat whose
  content differs from the first, which not even at-least-once allows);
- leaks: an output that no input explains;
- state mismatches: a key whose final state in the changelog differs from
  the state recomputed from the inputs.

This module checks the stand-in workload; `pipelinecheck.py` the pipeline,
with the same counts.

The stand-in workload's model: inputs `{"id": n}` per key; for each, one
record on `out-a` and one on `out-b` carrying the id and the key's count so
far (inputs of a key are counted in partition order); the changelog's final
count per key equals the number of inputs of that key; and, when `ticks` is
true, exactly one summary per key with its final count (all ticks follow all
inputs in the checked runs).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from streams.kafka import read_all
from streams.settings import Settings

TICK_KEY = b"\x00tick"
COUNTS_PREFIX = b"counts\x00"


@dataclass
class Report:
    events_in: int = 0
    expected: int = 0
    seen: int = 0
    missing: int = 0
    duplicates: int = 0
    conflicting: int = 0
    leaks: int = 0
    state_mismatches: int = 0

    @property
    def exact(self) -> bool:
        """Exactly once: everything expected seen once, nothing else."""
        return (
            self.missing == self.duplicates == self.leaks == self.state_mismatches == 0
            and self.seen == self.expected > 0
        )

    @property
    def at_least_once(self) -> bool:
        """Nothing lost or invented; repeats only of identical content."""
        return (
            self.missing == self.conflicting == self.leaks == self.state_mismatches == 0
            and self.expected > 0
        )

    def table(self) -> str:
        fields = asdict(self)
        return "  ".join(f"{name}={value}" for name, value in fields.items())


async def check_standin(
    settings: Settings, prefix: str, ticks: bool = False, app_id: str | None = None
) -> Report:
    """Check a stand-in run whose topics share `prefix`, run by `app_id` (default: prefix)."""
    inputs = [r for r in await read_all(settings, f"{prefix}.in") if r.key != TICK_KEY]
    outputs = {name: await read_all(settings, f"{prefix}.{name}") for name in ("out-a", "out-b")}
    changelog = await read_all(settings, f"{app_id or prefix}.standin-changelog")
    summaries = await read_all(settings, f"{prefix}.summaries") if ticks else []
    return compare(inputs, outputs, changelog, summaries if ticks else None)


def compare(
    inputs: list[Any],
    outputs: dict[str, list[Any]],
    changelog: list[Any],
    summaries: list[Any] | None,
) -> Report:
    """The reference model and the comparison, on records already read."""
    report = Report(events_in=len(inputs))
    # Reference model: per key, the running count in input (partition) order.
    expected: dict[tuple[bytes, int], bytes] = {}
    final: Counter[bytes] = Counter()
    for record in sorted(inputs, key=lambda r: (r.partition, r.offset)):
        final[record.key] += 1
        body = {"id": json.loads(record.value)["id"], "count": final[record.key]}
        expected[(record.key, body["id"])] = json.dumps(body).encode()

    for records in outputs.values():
        report.expected += len(expected)
        report.seen += len(records)
        first: dict[tuple[bytes, int], bytes] = {}
        for record in records:
            ident = (record.key, json.loads(record.value)["id"])
            if ident not in expected:
                report.leaks += 1
            elif ident in first:
                report.duplicates += 1
                report.conflicting += record.value != first[ident]
            else:
                first[ident] = record.value
                report.state_mismatches += record.value != expected[ident]
        report.missing += len(expected.keys() - first.keys())

    held: dict[bytes, int] = {}
    for record in changelog:
        if record.key.startswith(COUNTS_PREFIX):
            key = record.key[len(COUNTS_PREFIX) :]
            if record.value is None:
                held.pop(key, None)
            else:
                held[key] = json.loads(record.value)["count"]
    report.state_mismatches += sum(held.get(k, 0) != n for k, n in final.items())
    report.state_mismatches += len(held.keys() - final.keys())

    if summaries is not None:
        report.expected += len(final)
        report.seen += len(summaries)
        per_key: defaultdict[bytes, list[int]] = defaultdict(list)
        for record in summaries:
            per_key[record.key].append(json.loads(record.value)["count"])
        for key, n in final.items():
            counts = per_key.get(key, [])
            report.missing += not counts
            report.duplicates += max(0, len(counts) - 1)
            report.conflicting += len(set(counts)) > 1
            report.state_mismatches += bool(counts) and counts[0] != n
        report.leaks += len(per_key.keys() - final.keys())
    return report
