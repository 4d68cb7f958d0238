"""The stage's failure paths, in-process on the session broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streams import kafka, limits
from streams.core import recovery
from streams.core.handling import StageFailed
from streams.core.spec import Emit, StageSpec
from streams.core.stage import Stage
from streams.core.store import INPUT_OFFSET_KEY, PartitionStore, split_key
from streams.metrics import Metrics
from streams.settings import Settings
from tests.conftest import NewTopicFactory, bounded


def stage_on(
    settings: Settings, spec: StageSpec, max_batch: int | None = None, **fields: Any
) -> Stage:
    """A stage on the session broker with a registry of its own; `fields` are Settings
    fields (a fresh `app_id` unless one is given)."""
    fields.setdefault("app_id", f"t-{uuid.uuid4().hex[:8]}")
    return Stage(
        spec,
        Settings(bootstrap_servers=settings.bootstrap_servers, **fields),
        metrics=Metrics(CollectorRegistry()),
        max_batch=max_batch,
    )


async def read_partition(
    settings: Settings, topic: str, partition: int = 0, isolation: str = "read_committed"
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of one partition, from its first offset to its end. (Sought to the
    beginning offset itself: `seek_to_beginning` after `end_offsets` left a consumer at
    the end here, so a read found nothing however much was there.)"""
    consumer = kafka.consumer(settings, group_id=None, isolation_level=isolation)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        records: list[ConsumerRecord[bytes, bytes]] = []
        while await consumer.position(tp) < end:
            fetched = await bounded(consumer.getmany(tp, timeout_ms=2000))
            records += [r for r in fetched.get(tp, []) if r.offset < end]
        return records
    finally:
        await consumer.stop()


async def read_values(settings: Settings, topic: str, partition: int = 0) -> list[bytes]:
    return [r.value for r in await read_partition(settings, topic, partition)]


@pytest.mark.parametrize("stateful", [False, True])
async def test_a_handler_failure_writes_nothing_and_stops_the_stage(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path, stateful: bool
) -> None:
    """Handlers run over the whole batch before any transaction begins: a failure writes
    nothing, even uncommitted, opens no transaction and stops the stage with StageFailed
    (a stateful stage too: its standby copies stop with it)."""
    source, sink = await new_topic("in"), await new_topic("out")
    changelog = await new_topic("cl") if stateful else None
    producer = kafka.producer(settings)
    await producer.start()
    try:
        batch = [await producer.send(source, str(i).encode(), b"k") for i in range(10)]
        await asyncio.gather(*batch)
    finally:
        await producer.stop()

    def handle(record: ConsumerRecord[bytes, bytes], _: PartitionStore) -> Sequence[Emit]:
        if record.value == b"7":
            raise ValueError("a bug in a rule")
        return [Emit(sink, record.key, record.value)]

    spec = StageSpec("failing", handle, topics=(source,), changelog=changelog)
    stage = stage_on(settings, spec, data_dir=tmp_path)
    with pytest.raises(StageFailed, match=r"handler failed .* ValueError"):
        await bounded(stage.run(), 60)
    assert await read_partition(settings, sink, isolation="read_committed") == []
    assert await read_partition(settings, sink, isolation="read_uncommitted") == []
    for result in ("commit", "abort"):
        assert (
            stage.metrics.registry.get_sample_value(
                "passerelle_transactions_total", {"result": result}
            )
            is None
        )


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_a_record_that_raises_is_dead_lettered_and_the_partition_goes_on(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path, guarantee: str
) -> None:
    """With `on_error`, a record whose handler raises is dead-lettered in place of its
    outputs, its half-made state changes are undone, and the records around it are
    handled as if it were not there: 30 in = 28 out + 2 dead letters, counts intact."""
    source, sink, dlq = await new_topic("in"), await new_topic("out"), await new_topic("dlq")
    changelog = await new_topic("cl")
    producer = kafka.producer(settings)
    await producer.start()
    try:
        sends = [await producer.send(source, str(i).encode(), b"k") for i in range(30)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    def count(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        n = int(store.get("counts", record.key) or b"0") + 1
        store.put("counts", record.key, str(n).encode())  # a change the failure must undo
        if record.value in (b"7", b"21"):
            raise KeyError("a record no rule foresaw")
        return [Emit(sink, record.key, b"%s:%d" % (record.value, n))]

    def dead_letter(
        record: ConsumerRecord[bytes, bytes], exc: Exception, _: PartitionStore
    ) -> Sequence[Emit]:
        return [
            Emit(dlq, record.key, record.value, headers=(("error", type(exc).__name__.encode()),))
        ]

    spec = StageSpec("guarded", count, topics=(source,), changelog=changelog, on_error=dead_letter)
    stage = stage_on(settings, spec, data_dir=tmp_path, processing_guarantee=guarantee)
    await run_until_processed(stage, 30)
    survivors = [i for i in range(30) if i not in (7, 21)]
    assert await read_values(settings, sink) == [
        f"{i}:{n}".encode() for n, i in enumerate(survivors, start=1)
    ]
    letters = await read_partition(settings, dlq)
    assert [(r.value, dict(r.headers)["error"]) for r in letters] == [
        (b"7", b"KeyError"),
        (b"21", b"KeyError"),
    ]


@pytest.mark.parametrize("bulk", [False, True], ids=["restored", "restored-in-bulk"])
async def test_a_store_at_the_changelog_end_resumes_where_it_committed(
    settings: Settings,
    new_topic: NewTopicFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bulk_loads: list[Path],
    bulk: bool,
) -> None:
    """A store that restored once (an input offset from the changelog), then committed
    batches itself, resumes at its last commit when reopened with nothing to restore: each
    input counted once (the fault suite found a stale input offset replaying old input).
    The same whether its restores load it in bulk (`PartitionStore.loading`) or not."""
    if bulk:
        monkeypatch.setattr(recovery, "BULK_LOAD_OFFSETS", 0)
    source, sink, changelog = await new_topic("in"), await new_topic("out"), await new_topic("cl")
    app_id = f"t-{uuid.uuid4().hex[:8]}"

    def count(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        n = int(store.get("counts", record.key) or b"0") + 1
        store.put("counts", record.key, str(n).encode())
        return [Emit(sink, record.key, b"%s:%d" % (record.value, n))]

    async def produce(first: int) -> None:
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await asyncio.gather(
                *[
                    await producer.send(source, str(i).encode(), b"k")
                    for i in range(first, first + 5)
                ]
            )
        finally:
            await producer.stop()

    async def run_until(data_dir: Path, records: int) -> None:
        spec = StageSpec("counting", count, topics=(source,), changelog=changelog)
        await run_until_processed(
            stage_on(settings, spec, app_id=app_id, data_dir=data_dir), records
        )

    def input_offset(data_dir: Path) -> int | None:
        store = PartitionStore(data_dir / app_id / "counting" / f"{source}-0")
        try:
            return store.input_offset
        finally:
            store.close()

    await produce(0)
    await run_until(tmp_path / "first-owner", 5)
    await produce(5)
    await run_until(tmp_path / "second-owner", 5)  # restores the first owner's changelog
    assert input_offset(tmp_path / "second-owner") == 10  # as of its own commit, not the restore
    await produce(10)
    await run_until(tmp_path / "second-owner", 5)  # its store is at the changelog end
    assert input_offset(tmp_path / "second-owner") == 15

    assert await read_values(settings, sink) == [f"{i}:{i + 1}".encode() for i in range(15)]
    # each of the three runs' restore; none of these short ones at the usual threshold
    assert len(bulk_loads) == (3 if bulk else 0)


async def test_a_stateful_stage_resumes_at_its_state_not_at_a_group_offset_past_it(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """at_least_once commits a batch's offsets before its state: after a crash between
    the two, the group's offset lies past the changelog's input offset. The next owner
    resumes at the changelog's, even for records aiokafka fetched from the group's
    offset before the partition was opened (aio-libs/aiokafka#738): each counted once."""
    source, sink, changelog = await new_topic("in"), await new_topic("out"), await new_topic("cl")
    app_id = f"t-{uuid.uuid4().hex[:8]}"

    def count(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        n = int(store.get("counts", record.key) or b"0") + 1
        store.put("counts", record.key, str(n).encode())
        return [Emit(sink, record.key, str(n).encode())]

    async def produce(count: int) -> None:
        producer = kafka.producer(settings)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(source, b"v", b"k") for _ in range(count)])
        finally:
            await producer.stop()

    def stage() -> Stage:
        spec = StageSpec("counting", count, topics=(source,), changelog=changelog)
        return stage_on(
            settings, spec, app_id=app_id, data_dir=tmp_path, processing_guarantee="at_least_once"
        )

    await produce(10)
    await run_until_processed(stage(), 10)  # state: k counted 10 times, input offset 10
    await produce(20)
    committer = kafka.consumer(settings, group_id=f"{app_id}-counting", enable_auto_commit=False)
    await committer.start()
    try:
        committer.assign([TopicPartition(source, 0)])
        await committer.commit({TopicPartition(source, 0): 20})  # as if 10-19 crashed mid-way
    finally:
        await committer.stop()
    await run_until_processed(stage(), 20)
    assert await read_values(settings, sink, 0) == [str(n).encode() for n in range(1, 31)]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_a_batch_changing_more_than_one_changelog_batch_holds_is_done_in_halves(
    settings: Settings,
    new_topic: NewTopicFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    guarantee: str,
) -> None:
    """Each batch's state changes are written as one changelog record batch ending with
    the input offset they reach; when they do not fit one, the batch is processed in
    halves: every input's change lands once, between the offsets that enclose it."""
    monkeypatch.setattr(limits, "MAX_CHANGELOG_BATCH_BYTES", 4096)
    source, changelog = await new_topic("in"), await new_topic("cl")
    producer = kafka.producer(settings)
    await producer.start()
    try:
        sends = [await producer.send(source, b"v", b"k%03d" % i) for i in range(40)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    def remember(record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        store.put("t", record.key, bytes(300))  # 40 × 300 bytes: at least three batches
        return []

    spec = StageSpec("halving", remember, topics=(source,), changelog=changelog)
    stage = stage_on(settings, spec, data_dir=tmp_path, processing_guarantee=guarantee)
    await run_until_processed(stage, 40)

    written = await read_partition(settings, changelog)
    batches: list[tuple[list[bytes], int]] = []
    changed: list[bytes] = []
    for record in written:
        if record.key == INPUT_OFFSET_KEY:
            batches.append((changed, int(record.value)))
            changed = []
        else:
            changed.append(split_key(record.key)[1])
    assert changed == []  # nothing after the last batch's input offset
    assert len(batches) >= 3
    first = 0
    for keys, reached in batches:
        assert sorted(keys) == [b"k%03d" % i for i in range(first, reached)]
        first = reached
    assert first == 40


async def test_a_catch_up_backlog_is_read_before_any_other_partition(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    """Records waiting on a `catch_up` topic at assignment are all handled before the first
    record of the stage's other topics (which are paused meanwhile), however many there are."""
    consents, bank = await new_topic("c"), await new_topic("b")
    producer = kafka.producer(settings, linger_ms=20)
    await producer.start()
    try:
        sends = [await producer.send(bank, b"tx", b"k") for _ in range(2000)]
        sends += [await producer.send(consents, b"consent", b"k") for _ in range(5000)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    seen: list[str] = []

    def handle(record: ConsumerRecord[bytes, bytes], _: PartitionStore) -> Sequence[Emit]:
        seen.append(record.topic)
        return []

    spec = StageSpec("gate", handle, topics=(bank, consents), catch_up=(consents,))
    stage = stage_on(settings, spec, max_batch=500)
    await run_until_processed(stage, 7000)
    assert seen == [consents] * 5000 + [bank] * 2000


class Counting:
    """A stateful stage counting each key's records of a two-partition topic, and the
    workers that run it in-process in one group."""

    def __init__(self, settings: Settings, topics: dict[str, str], tmp_path: Path) -> None:
        self.settings, self.tmp_path = settings, tmp_path
        self.source, self.sink, self.changelog = topics["in"], topics["out"], topics["cl"]
        self.app_id = f"t-{uuid.uuid4().hex[:8]}"
        self.tasks: dict[Stage, asyncio.Task[None]] = {}

    @classmethod
    async def create(
        cls, settings: Settings, new_topic: NewTopicFactory, tmp_path: Path, partitions: int = 2
    ) -> Counting:
        names = ("in", "out", "cl")
        topics = {name: await new_topic(name, partitions=partitions) for name in names}
        return cls(settings, topics, tmp_path)

    def count(self, record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> Sequence[Emit]:
        n = int(store.get("counts", record.key) or b"0") + 1
        store.put("counts", record.key, str(n).encode())
        return [Emit(self.sink, record.key, str(n).encode(), partition=record.partition)]

    async def produce(self, per_partition: int, partitions: tuple[int, ...] = (0, 1)) -> None:
        """`per_partition` records to each partition, cycling over 50 keys."""
        producer = kafka.producer(self.settings)
        await producer.start()
        try:
            sends = [
                await producer.send(self.source, b"v", b"k%d" % (i % 50), partition=p)
                for p in partitions
                for i in range(per_partition)
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    def start(self, name: str, guarantee: str = "at_least_once", **fields: Any) -> Stage:
        spec = StageSpec("counting", self.count, topics=(self.source,), changelog=self.changelog)
        stage = stage_on(
            self.settings,
            spec,
            app_id=self.app_id,
            data_dir=self.tmp_path / name,
            processing_guarantee=guarantee,
            **fields,
        )
        self.tasks[stage] = asyncio.create_task(stage.run())
        return stage

    async def stop(self, stage: Stage) -> None:
        stage.stop()
        await bounded(self.tasks.pop(stage), 60)

    async def stop_all(self) -> None:
        for stage in list(self.tasks):
            await self.stop(stage)

    async def one_partition_each(self, first: Stage, second: Stage) -> None:
        await until(
            lambda: (
                len(first.ownership.partitions) == len(second.ownership.partitions) == 1
                and first.ready.is_set()
                and second.ready.is_set()
            ),
            "one partition each",
        )


async def until(
    condition: Callable[[], bool], what: str, state: Callable[[], object] | None = None
) -> None:
    """Wait (60 s at most) for the condition; else fail, saying what (and the `state`)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.1)

    try:
        await bounded(poll(), 60)
    except TimeoutError:
        pytest.fail(f"not within 60 s: {what}" + (f" ({state()})" if state else ""))


async def test_a_partition_taken_over_from_a_warm_standby_copy_restores_only_the_tail(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """Two workers of a stateful stage each keep a standby copy of the other's partition:
    when one leaves, the other opens that partition from its copy, reading none of the
    changelog it already holds, and counts on from where the first left off."""
    counting = await Counting.create(settings, new_topic, tmp_path)

    def restored(stage: Stage) -> float:
        sample = "passerelle_restored_records_total"
        return stage.metrics.registry.get_sample_value(sample, {"table": "counting"}) or 0.0

    await counting.produce(500)
    first = counting.start("first")
    await until(lambda: first.processed == 1000, "the first worker counts everything")
    second = counting.start("second")
    await counting.one_partition_each(first, second)
    (moving,) = first.ownership.partitions
    await counting.produce(300)
    await until(lambda: first.processed + second.processed == 1600, "both count the new ones")
    end = (await changelog_ends(settings, counting.changelog))[moving.partition]
    await until(
        lambda: second.standby is not None and second.standby.copies().get(moving.partition) == end,
        "the second worker's copy of the first's partition is at its changelog's end",
    )
    before = restored(second)
    await counting.stop(first)
    await until(lambda: moving in second.ownership.partitions, "the second worker takes over")
    assert restored(second) == before  # its copy held every record already
    await counting.produce(100)
    await until(lambda: second.processed == 300 + 200, "the second worker counts on")
    await counting.stop_all()
    counted = await read_values(settings, counting.sink, moving.partition)
    assert counted[-100:] == [str(n).encode() for n in range(17, 19) for _ in range(50)]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_a_partition_given_back_by_the_next_assignment_keeps_its_producer_and_store(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path, guarantee: str
) -> None:
    """aiokafka's rebalances revoke every partition and then give most back: the one a
    worker keeps through a second worker's arrival keeps its producer and its store
    (no fencing, no new restore), and its counts go on exactly."""
    counting = await Counting.create(settings, new_topic, tmp_path)
    await counting.produce(500)
    first = counting.start("first", guarantee)
    await until(lambda: first.processed == 1000, "the first worker counts everything")
    before = {tp: (part.producers, part.store) for tp, part in first.ownership.partitions.items()}
    second = counting.start("second", guarantee)
    await counting.one_partition_each(first, second)
    (kept,) = first.ownership.partitions
    assert (
        first.ownership.partitions[kept].producers,
        first.ownership.partitions[kept].store,
    ) == before[kept]
    await counting.produce(100)
    await until(lambda: first.processed + second.processed == 1200, "both count the new ones")
    await counting.stop_all()
    counted = await read_values(settings, counting.sink, kept.partition)
    assert counted == [str(i // 50 + 1).encode() for i in range(600)]


async def test_under_at_least_once_a_round_is_sent_while_the_one_before_commits(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """A round waits for its outputs only: while the first round's state and offsets
    transaction is held back, the next round's outputs are already readable, and nothing
    counts as processed until the transactions are done, in order."""
    counting = await Counting.create(settings, new_topic, tmp_path)
    stage = counting.start("only")
    await until(lambda: stage.ready.is_set(), "it owns both")
    transaction, held, released = stage.transaction, asyncio.Event(), asyncio.Event()

    async def held_transaction(*args: Any) -> Exception | None:
        if not released.is_set():
            held.set()
            await released.wait()
        return await transaction(*args)

    stage.transaction = held_transaction  # type: ignore[method-assign,assignment]  # holds the first tail
    # One partition: a poll takes what it has, and a round that took part of a write
    # would leave the rest to the next round (which waits for the held tail) and the
    # second write to a third that never comes while the tail is held.
    await counting.produce(50, partitions=(0,))
    await bounded(held.wait(), 60)
    await until_read(settings, counting.sink, 50)  # the first round(s)
    await asyncio.sleep(1)  # a round still to take part of the first write takes it now
    before = await read_count(settings, counting.sink)
    await counting.produce(50, partitions=(0,))
    await until_read(settings, counting.sink, before + 1)
    assert stage.processed == 0
    released.set()
    await until(lambda: stage.processed == 100, "both writes are committed")
    await counting.stop_all()
    counted = await read_values(settings, counting.sink, 0)
    assert counted == [str(i // 50 + 1).encode() for i in range(100)]


async def test_under_at_least_once_a_failed_tail_reopens_its_partitions_and_repeats_identically(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """A round whose state and offsets commit fails (its outcome unknown) leaves its
    partitions to be re-opened from their changelog: the redo repeats the outputs already
    sent, value for value, and the counts go on from the state that produced them."""
    counting = await Counting.create(settings, new_topic, tmp_path)
    stage = counting.start("only")
    await until(lambda: stage.ready.is_set(), "it owns both")
    refused: list[TopicPartition] = []
    for tp, part in stage.ownership.partitions.items():
        producer = part.state.producer

        async def refusing_commit(tp: TopicPartition = tp) -> None:
            refused.append(tp)
            raise KafkaConnectionError("refused by the test")

        producer.commit_transaction = refusing_commit  # this producer's every commit
    await counting.produce(50)
    await until(lambda: stage.processed == 100, "the refused round is done again")
    await counting.produce(50)
    await until(lambda: stage.processed == 200, "the next records are counted")
    await counting.stop_all()
    aborts = stage.metrics.registry.get_sample_value(
        "passerelle_transactions_total", {"result": "abort"}
    )
    assert refused and aborts == len(refused)  # one per partition of the refused round
    for partition in (0, 1):
        counted = await read_values(settings, counting.sink, partition)
        redone = [b"1"] * 50 if TopicPartition(counting.source, partition) in refused else []
        assert counted == [b"1"] * 50 + redone + [b"2"] * 50


async def test_under_at_least_once_a_paused_owner_never_writes_state_after_its_successor(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    """An owner paused in the middle of a round's tail (SIGSTOP, a long GC) while a
    successor takes its partitions and writes newer state: once it resumes, its old
    state is refused (the successor's producer, same transactional id, fenced it) and
    nothing of it lands after the successor's, where the next restore would read it."""
    counting = await Counting.create(settings, new_topic, tmp_path)
    stage = counting.start("paused")
    await until(lambda: stage.ready.is_set(), "it owns both")
    await counting.produce(50)
    await until(lambda: stage.processed == 100, "the first round is committed")
    transaction, paused, resumed = stage.transaction, asyncio.Event(), asyncio.Event()
    pausing: list[int] = []  # the partitions of the paused round (one or both)
    outcomes: dict[int, tuple[Exception | None, list[bytes]]] = {}

    async def paused_tail(part: Any, *args: Any) -> Exception | None:
        pausing.append(part.tp.partition)
        paused.set()
        await resumed.wait()
        outcome = await transaction(part, *args)
        changelog = await read_partition(settings, counting.changelog, part.tp.partition)
        after = [r.key for r in changelog][[r.key for r in changelog].index(b"successor") + 1 :]
        outcomes[part.tp.partition] = (outcome, after)
        return outcome

    stage.transaction = paused_tail  # type: ignore[method-assign,assignment]
    await counting.produce(50)
    await bounded(paused.wait(), 60)
    for partition in (0, 1):  # the successor: the partition's transactional id, newer state
        successor = kafka.producer(
            settings, transactional_id=f"{stage.group_id}-{counting.source}-{partition}"
        )
        await successor.start()
        try:
            await successor.begin_transaction()
            await successor.send_and_wait(
                counting.changelog, b"newer", b"successor", partition=partition
            )
            await successor.commit_transaction()
        finally:
            await successor.stop()
    stage.transaction = transaction  # type: ignore[method-assign]  # the redo runs as usual
    resumed.set()
    await until(lambda: len(outcomes) == len(pausing), "the paused tails have resumed")
    await counting.stop_all()
    assert outcomes
    for partition, (outcome, after) in outcomes.items():
        assert outcome is not None, f"partition {partition}: a fenced owner committed its state"
        assert after == [], f"partition {partition}: {after} written after the successor's"


async def read_count(settings: Settings, topic: str) -> int:
    """The records both partitions of `topic` hold together."""
    return sum([len(await read_values(settings, topic, p)) for p in (0, 1)])


async def until_read(settings: Settings, topic: str, records: int) -> None:
    """Wait until both partitions of `topic` hold `records` records together."""

    async def poll() -> None:
        while await read_count(settings, topic) < records:
            await asyncio.sleep(0.1)

    try:
        await bounded(poll(), 60)
    except TimeoutError:
        pytest.fail(f"not within 60 s: {records} records in {topic}")


async def changelog_ends(
    settings: Settings, topic: str, partitions: Sequence[int] = (0, 1)
) -> dict[int, int]:
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def run_until_processed(stage: Stage, records: int, timeout_s: float = 60) -> None:
    """Run the stage in-process until it has committed `records` input records, then stop it."""
    task = asyncio.create_task(stage.run())

    async def processed() -> None:
        while stage.processed < records:
            assert not task.done(), task  # it stopped (and raises) before getting there
            await asyncio.sleep(0.05)

    try:
        await bounded(processed(), timeout_s)
    finally:
        stage.stop()
        await bounded(task, 60)
