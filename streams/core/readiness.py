"""When a stage is ready, and what holds it back: the catch-up of its `catch_up` topics.

A stage is ready once the group has given it its partitions, their state is
restored (the open does that), and its `catch_up` partitions (the consents)
are read up to where they ended at assignment. Until then its other
partitions are paused, so no transaction overtakes a consent that was already
waiting. `/readyz` and the `stage_ready` gauge report it, next to the gauges
of the stage's progress (consumer lag, table keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from streams.core.ownership import Partition
from streams.logs import event
from streams.metrics import Metrics

log = logging.getLogger(__name__)


class Readiness:
    """One stage's readiness and catch-up. The stage calls it under its lock."""

    def __init__(self, stage: str, catch_up: tuple[str, ...], metrics: Metrics) -> None:
        self.stage = stage
        self.catch_up_topics = catch_up
        self.metrics = metrics
        self.ready = asyncio.Event()
        """Set once partitions are assigned, their state restored, and the
        `catch_up` topics read up to where they ended at assignment."""
        self.catching_up: dict[TopicPartition, int] = {}
        """The end offsets a `catch_up` partition must reach before the stage is ready."""
        self.paused: set[TopicPartition] = set()
        """Other partitions, paused until the `catch_up` ones reach those offsets."""
        self.assigned = False
        """The group has given the stage its partitions (maybe none) and they are open."""

    async def hold_back(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """After an assignment: pause every partition but the `catch_up` ones until
        those reach the end offsets they have now."""
        backlog = [tp for tp in assigned if tp.topic in self.catch_up_topics]
        if backlog:
            self.catching_up.update(await consumer.end_offsets(backlog))
            await self.progress(consumer)
            if self.catching_up:
                self.paused = {tp for tp in assigned if tp.topic not in self.catch_up_topics}
                consumer.pause(*self.paused)
        self.assigned = True

    async def progress(self, consumer: AIOKafkaConsumer) -> None:
        """Forget `catch_up` partitions that reached their target; once none is left,
        resume the partitions held back."""
        for tp, target in list(self.catching_up.items()):
            try:
                if await consumer.position(tp) >= target:
                    del self.catching_up[tp]
            except IllegalStateError:  # a rebalance took it away meanwhile
                del self.catching_up[tp]
        if not self.catching_up and self.paused:
            consumer.resume(*self.paused)
            self.paused.clear()

    def revoke(self, revoked: list[TopicPartition]) -> None:
        """Partitions taken away: not ready until the next assignment is open."""
        for tp in revoked:
            self.catching_up.pop(tp, None)
            self.paused.discard(tp)
            with contextlib.suppress(KeyError):  # no lag reported for it yet
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self.assigned = False
        self.ready.clear()
        self.metrics.stage_ready.labels(self.stage).set(0)

    def decide(self) -> None:
        """Say ready (once) when assigned and caught up."""
        if self.assigned and not self.catching_up and not self.ready.is_set():
            self.ready.set()
            self.metrics.stage_ready.labels(self.stage).set(1)
            log.info("stage %s is ready", self.stage, extra=event("ready", stage=self.stage))

    async def report(
        self, consumer: AIOKafkaConsumer, owned: Mapping[TopicPartition, Partition], stateful: bool
    ) -> None:
        """Refresh the lag of each owned partition and the keys of their stores, then
        readiness."""
        await self.progress(consumer)
        keys = 0
        for tp, part in owned.items():
            try:
                position = await consumer.position(tp)
            except IllegalStateError:  # a rebalance took it away meanwhile
                continue
            end = consumer.last_stable_offset(tp)
            if end is None or end < 0:
                end = consumer.highwater(tp)
            if end is not None and end >= 0:
                lag = max(0, end - position)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
            if part.store is not None:
                keys += part.store.estimated_keys()
        if stateful:
            self.metrics.table_keys.labels(self.stage).set(keys)
        self.decide()
