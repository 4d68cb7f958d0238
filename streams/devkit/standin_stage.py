"""The stand-in workload that proves the processing core before the real rules.

Per input record: one counter update in a table, and two outputs (`out-a`,
`out-b`), neither consumed by the app. Per tick: a summary of every key
counted since its last summary, once. Records are JSON; inputs are
`{"id": n}` keyed by an account-like key.

Topics are named from one prefix: `<prefix>.in`, `<prefix>.out-a`,
`<prefix>.out-b`, `<prefix>.summaries`; the changelog is the app's
(`<app_id>.standin-changelog`, from the catalog).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from streams.core.spec import Emit, StageSpec
from streams.core.store import PartitionStore
from streams.core.ticks import tick_time

COUNTS = "counts"


@dataclass(frozen=True)
class StandinTopics:
    prefix: str

    @property
    def input(self) -> str:
        return f"{self.prefix}.in"

    @property
    def out_a(self) -> str:
        return f"{self.prefix}.out-a"

    @property
    def out_b(self) -> str:
        return f"{self.prefix}.out-b"

    @property
    def summaries(self) -> str:
        return f"{self.prefix}.summaries"


def spec(topics: StandinTopics, changelog: str) -> StageSpec:
    def handle(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        now = tick_time(record)
        if now is not None:
            return summarize(store, topics, now)
        return count(record, store, topics)

    return StageSpec("standin", handle, topics=(topics.input,), changelog=changelog)


def count(
    record: ConsumerRecord[bytes, bytes], store: PartitionStore, topics: StandinTopics
) -> list[Emit]:
    key = record.key or b""
    held = store.get(COUNTS, key)
    state = json.loads(held) if held else {"count": 0}
    state = {"count": state["count"] + 1, "summarized": False}
    store.put(COUNTS, key, json.dumps(state).encode())
    out = json.dumps({"id": json.loads(record.value)["id"], "count": state["count"]}).encode()
    return [Emit(topics.out_a, key, out), Emit(topics.out_b, key, out)]


def summarize(store: PartitionStore, topics: StandinTopics, now_ms: int) -> list[Emit]:
    emits = []
    for key, raw in list(store.items(COUNTS)):
        state = json.loads(raw)
        if not state["summarized"]:
            store.put(
                COUNTS, key, json.dumps({"count": state["count"], "summarized": True}).encode()
            )
            summary = {"count": state["count"], "tick": now_ms}
            emits.append(Emit(topics.summaries, key, json.dumps(summary).encode()))
    return emits
