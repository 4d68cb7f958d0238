"""The processing guarantees: how a round of batches gets committed, one object each.

A stage polls, and hands the poll's batches (one per input partition) to its
guarantee's `round`. The stage does the work both share: `prepare` runs the
handler over a batch (its outputs, and its state changes as one changelog
record batch), `transaction` commits a partition's batch in one Kafka
transaction of its transactional producer (outputs if any, changelog, input
offsets), `reopen` starts a partition again from what Kafka committed. What
differs is the order of the steps and what a failure breaks:

`ExactlyOnce`, each partition on its own:
    1. prepare the batch
    2. one transaction: its outputs, its changelog, its input offsets
    3. committed: the store applies the state, the partition goes on;
       not committed (or unknown): the partition is re-opened and the batch
       done again, nothing of it having been readable

`AtLeastOnce`, the partitions of a round together:
    1. prepare every batch
    2. send their outputs (idempotent producers, no transaction) and wait for
       the acknowledgements: the outputs are readable now
    3. wait for the previous round's tail
    4. start this round's tail, which runs while the next round does 1-2:
       a stateful stage commits each partition's changelog and input offsets
       in one transaction (a successor's producer fences it); a stateless one
       commits the round's offsets in one consumer commit
    5. a tail that failed leaves its partitions broken: a round handled
       meanwhile on them saw the state a replay starts from, so its outputs
       repeat identically, and they are re-opened at the next safe point
       (`repair`), or closed if they are being revoked

The stage picks its guarantee once (`for_settings`); everything else asks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError
from aiokafka.structs import ConsumerRecord

from streams.core.batches import BatchWriter, Built, SendFailed
from streams.core.spec import Emit

# What a failed batch raises: a send not acknowledged (SendFailed), the client's
# errors, and IllegalOperation (not a KafkaError: a fenced producer's transaction
# ended under the batch, and aiokafka refuses its next send).
SEND_ERRORS = (SendFailed, KafkaError, IllegalOperation)

Records = list[ConsumerRecord[bytes, bytes]]
"""One partition's records of a poll, in offset order."""


class Part(Protocol):
    """What a guarantee sees of an owned partition."""

    @property
    def tp(self) -> TopicPartition: ...
    @property
    def writer(self) -> BatchWriter: ...


P = TypeVar("P", bound=Part)
P_contra = TypeVar("P_contra", bound=Part, contravariant=True)


class Host(Protocol[P_contra]):
    """What a guarantee asks of its stage (about its partitions, of type P)."""

    @property
    def stateful(self) -> bool: ...

    async def prepare(
        self, part: P_contra, records: Records
    ) -> tuple[Records, list[Emit], Built] | None:
        """The batch's records still to do, its outputs and changelog; None if nothing
        is left to send."""

    async def transaction(
        self, part: P_contra, records: Records, emits: Sequence[Emit], changelog: Built
    ) -> Exception | None:
        """Commit outputs, changelog and input offsets in one transaction; the error if
        it was not (or may not have been) committed."""

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The consumer's commit of these input offsets (raises KafkaError)."""

    def done(self, part: P_contra, records: Records) -> None:
        """A batch committed: the partition goes on after it."""

    def aborted(self, part: P_contra, records: Records, error: Exception) -> None:
        """A batch not committed: log it and count it."""

    def owns(self, part: P_contra) -> bool:
        """The partition is still this one (not closed or re-opened since)."""

    async def reopen(self, part: P_contra) -> None:
        """Start the partition again from what Kafka committed."""

    async def release(self, part: P_contra) -> None:
        """Close a partition being revoked, not to be kept for the next assignment."""


class Guarantee(Protocol[P_contra]):
    name: str
    keeps_position: bool
    """A partition kept through a rebalance resumes at its own position, Kafka not
    asked (exactly_once: its last commit's markers may not have landed yet)."""

    def producers(self, stateful: bool) -> tuple[bool, ...]:
        """The producers a partition needs, each True if transactional: the first sends
        the outputs, the last commits the state and offsets (the same one if one)."""

    async def round(self, batches: Sequence[tuple[P_contra, Records]]) -> None:
        """Process one poll's batches, one per partition."""

    async def idle(self) -> None:
        """A poll returned nothing: finish what an earlier round left, if it can."""

    async def drain(self) -> None:
        """Wait for what is in flight (before a revoke, or the stage stops)."""

    async def repair(self, revoking: bool = False) -> None:
        """Re-open the partitions a failure broke, or close them if being revoked."""


def for_settings(processing_guarantee: str, host: Host[P]) -> Guarantee[P]:
    if processing_guarantee == "exactly_once":
        return ExactlyOnce(host)
    return AtLeastOnce(host)


class ExactlyOnce(Generic[P]):
    """Everything a batch causes, committed with its input offset in one transaction."""

    name = "exactly_once"
    keeps_position = True

    def __init__(self, host: Host[P]) -> None:
        self.host = host

    def producers(self, stateful: bool) -> tuple[bool, ...]:
        return (True,)

    async def round(self, batches: Sequence[tuple[P, Records]]) -> None:
        await asyncio.gather(*(self._process(part, records) for part, records in batches))

    async def _process(self, part: P, records: Records) -> None:
        prepared = await self.host.prepare(part, records)
        if prepared is None:
            return
        records, emits, changelog = prepared
        failure = await self.host.transaction(part, records, emits, changelog)
        if failure is not None:
            self.host.aborted(part, records, failure)
            await self.host.reopen(part)

    async def idle(self) -> None:
        return None

    async def drain(self) -> None:
        return None

    async def repair(self, revoking: bool = False) -> None:
        return None


class AtLeastOnce(Generic[P]):
    """Outputs first, readable on acknowledgement; then state and offsets, overlapped
    with the next round (the module docstring has the steps)."""

    name = "at_least_once"
    keeps_position = False

    def __init__(self, host: Host[P]) -> None:
        self.host = host
        self._tail: asyncio.Task[list[P]] | None = None
        """The last round's tail while it runs: it returns the partitions it failed."""
        self._broken: dict[TopicPartition, P] = {}
        """Partitions whose round's tail failed: re-opened at the next safe point."""

    def producers(self, stateful: bool) -> tuple[bool, ...]:
        # One idempotent producer per partition for the outputs: aiokafka keeps one
        # request in flight per producer and broker, so a shared producer would
        # serialise every partition's sends.
        return (False, True) if stateful else (False,)

    async def round(self, batches: Sequence[tuple[P, Records]]) -> None:
        """Steps 1-4: a round waits for its outputs' acknowledgements only (at 1 000
        transactions a second that took the end-to-end p50 from ~54 to ~35 ms,
        docs/performance.md)."""
        sending = await asyncio.gather(*(self._send_outputs(p, r) for p, r in batches))
        sent = [s for s in sending if s is not None]
        await self.drain()
        sent = [s for s in sent if self._broken.get(s[0].tp) is not s[0]]
        if sent:
            self._tail = asyncio.create_task(self._finish(sent))

    async def _send_outputs(self, part: P, records: Records) -> tuple[P, Records, Built] | None:
        """Handle a batch and send its outputs; what is left to do for it, if anything."""
        prepared = await self.host.prepare(part, records)
        if prepared is None:
            return None
        records, emits, changelog = prepared
        try:
            await part.writer.send(emits)
        except SEND_ERRORS as exc:
            # What was acknowledged stays (at-least-once); the batch is done again from
            # the state and offset the changelog holds, so it repeats identically.
            self.host.aborted(part, records, exc)
            await self.drain()
            await self.host.reopen(part)
            return None
        return part, records, changelog

    async def _finish(self, sent: list[tuple[P, Records, Built]]) -> list[P]:
        """A round's tail (step 4): the partitions whose tail failed.

        A stateful stage commits each partition's changelog record batch and input
        offset in one transaction, which a new owner fences. An offset commit followed
        by a state write could not be fenced: a worker paused between the two (SIGSTOP
        in the fault suite) wrote its old state after its successor's newer one, and
        the next restore read it (one notification of 84 266 conflicted). A stateless
        stage has no state to protect: one offset commit for the whole round (a broker
        answers a connection's requests one at a time), refused to a member the group
        has moved on from."""
        if self.host.stateful:
            failures = await asyncio.gather(
                *(self.host.transaction(p, r, (), c) for p, r, c in sent)
            )
            failed = []
            for (part, records, _), failure in zip(sent, failures, strict=True):
                if failure is not None:
                    self.host.aborted(part, records, failure)
                    failed.append(part)
            return failed
        try:
            await self.host.commit_offsets({p.tp: r[-1].offset + 1 for p, r, _ in sent})
        except KafkaError as exc:
            # (A CommitFailedError: the group moved on; the rebalance takes the partitions.)
            for part, records, _ in sent:
                self.host.aborted(part, records, exc)
            return [part for part, _, _ in sent]
        for part, records, _ in sent:
            self.host.done(part, records)
        return []

    async def idle(self) -> None:
        if self._tail is not None and self._tail.done():
            await self.drain()
            await self.repair()

    async def drain(self) -> None:
        """Wait for the last round's tail; the partitions it could not finish are broken.
        A broken partition's store still holds its sealed batches, so a round handled
        meanwhile saw the state its outputs came from: those outputs repeat a replay's.
        Re-opening it (`repair`) or closing it forgets them."""
        tail = self._tail
        if tail is None:
            return
        try:
            failed = await tail  # (an error other than Kafka's stops the stage, as before)
        finally:
            if self._tail is tail:
                self._tail = None
        for part in failed:
            self._broken[part.tp] = part

    async def repair(self, revoking: bool = False) -> None:
        """Re-open the broken partitions still owned (from their changelog and offsets),
        or, when they are being revoked, close them (not kept for the next assignment:
        it opens them anew if it gives them back)."""
        broken, self._broken = self._broken, {}
        for part in broken.values():
            if not self.host.owns(part):
                continue
            if revoking:
                await self.host.release(part)
            else:
                await self.host.reopen(part)
