"""Purging an internal input: records a stage has committed are deleted from its topic.

A stage whose input is one of our own streams (the per-account stream, the psid
stream) never reads a record again once its batch is committed: the state and the
offset after it are in the same transaction, and a restart resumes from there. So,
as Kafka Streams purges its repartition topics, the stage deletes those records
(Kafka's DeleteRecords, up to the committed offset), and the clear copies of
transactions and consents these streams carry last minutes, not the topic's
retention (which stays, as the backstop for a backlog no stage has committed).

Deletion lags the commit by `Settings.purge_after_s` (10 minutes by default), so an
operator, or a test's checker, can still read what a stage has just done. The
stage asks at most every `PURGE_EVERY_S`; a partition it no longer owns is its new
owner's to purge. A failed deletion (no DELETE right on the topic, a leader moving)
is logged once a minute at most and tried again on the next round: nothing is lost,
the records only stay longer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from streams import kafka
from streams.limits import PURGE_EVERY_S
from streams.logs import event
from streams.settings import Settings

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0


class Purge:
    """What a stage has committed of each partition, and when; deletes it once due."""

    def __init__(
        self,
        settings: Settings,
        stage: str,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Not `enabled` (a stage whose input is not ours to delete): does nothing."""
        self.settings, self.stage, self.clock, self.enabled = settings, stage, clock, enabled
        self._task: asyncio.Task[None] | None = None
        self.after_s = float(settings.purge_after_s)
        self._committed: dict[TopicPartition, list[tuple[float, int]]] = {}
        """Per partition, (when, the offset committed then), oldest first."""
        self._deleted: dict[TopicPartition, int] = {}
        self._next = 0.0
        self._warned = -WARN_EVERY_S
        self._admin: AIOKafkaAdminClient | None = None

    def committed(self, tp: TopicPartition, next_offset: int) -> None:
        """The stage committed `tp` up to `next_offset` (exclusive)."""
        if self.enabled:
            self._committed.setdefault(tp, []).append((self.clock(), next_offset))

    def poke(self) -> None:
        """Start a round in the background if one is due and none runs (the stage's
        loop never waits on a deletion)."""
        if (
            self.enabled
            and self.clock() >= self._next
            and (self._task is None or self._task.done())
        ):
            self._task = asyncio.get_running_loop().create_task(self.run())

    def forget(self, revoked: list[TopicPartition]) -> None:
        """The partitions are no longer this stage's: their new owners purge them."""
        for tp in revoked:
            self._committed.pop(tp, None)
            self._deleted.pop(tp, None)

    def due(self) -> dict[TopicPartition, int]:
        """Per partition, the highest offset committed at least `after_s` ago and not yet
        deleted up to; what is older is dropped from memory."""
        cutoff, due = self.clock() - self.after_s, {}
        for tp, marks in self._committed.items():
            ripe = [offset for at, offset in marks if at <= cutoff]
            if ripe:
                del marks[: len(ripe)]
                if max(ripe) > self._deleted.get(tp, -1):
                    due[tp] = max(ripe)
        return due

    async def run(self) -> None:
        """Delete what is due, at most every PURGE_EVERY_S."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + PURGE_EVERY_S
        due = self.due()
        if not due:
            return
        try:
            if self._admin is None:
                self._admin = kafka.admin(self.settings)
                await self._admin.start()
            asked = {tp: RecordsToDelete(before_offset=offset) for tp, offset in due.items()}
            await self._admin.delete_records(asked, timeout_ms=10_000)
        except Exception as exc:  # the records stay longer; the next round asks again
            for tp, offset in due.items():  # due again next round
                self._committed.setdefault(tp, []).insert(0, (now - self.after_s, offset))
            if now - self._warned >= WARN_EVERY_S:
                self._warned = now
                log.warning(
                    "could not purge the %s stage's input: %s",
                    self.stage,
                    type(exc).__name__,
                    extra=event("purge_failed", stage=self.stage, reason=type(exc).__name__),
                )
            return
        self._deleted.update(due)

    async def close(self) -> None:
        if self._task is not None:
            await self._task
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
