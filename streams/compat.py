"""Schema compatibility, checked with the Avro reference implementation.

BACKWARD: data written with any older version reads with the new one.
FORWARD: data written with the new version reads with every older one.
FULL: both. Every version is checked against every version before it
(Confluent's *_TRANSITIVE modes), since old data stays in topics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from streams.codec import Registry

_MODES = {
    "BACKWARD": ("backward",),
    "FORWARD": ("forward",),
    "FULL": ("backward", "forward"),
    "NONE": (),
}


def problems(
    mode: str, candidate: Mapping[str, Any], earlier: list[Mapping[str, Any]]
) -> list[str]:
    """Why `candidate` cannot follow `earlier` under `mode`; empty when it can."""
    if mode not in _MODES:
        raise ValueError(f"unknown compatibility mode {mode!r}")
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro ships no annotations here
    new = _avro(candidate)
    found = []
    for index, old_definition in enumerate(earlier, start=1):
        old = _avro(old_definition)
        for direction in _MODES[mode]:
            reader, writer = (new, old) if direction == "backward" else (old, new)
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                details = "; ".join(sorted(result.messages)) or "incompatible"
                found.append(f"{direction} against version {index}: {details}")
    return found


def check_registry(registry: Registry, subjects: list[str]) -> dict[str, list[str]]:
    """Every version of every subject checked against those before it."""
    report: dict[str, list[str]] = {}
    for subject in subjects:
        versions = registry.versions(subject)
        mode = registry.compatibility(subject)
        report[subject] = [
            f"v{v.version}: {p}"
            for i, v in enumerate(versions)
            for p in problems(mode, v.definition, [e.definition for e in versions[:i]])
        ]
    return report


def _avro(definition: Mapping[str, Any]) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(definition))
