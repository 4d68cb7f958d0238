"""k standby copies on a real broker (`core/placement.py`, `core/group.py`): each
partition followed by k workers other than its owner, nothing else kept on disk, and
a departed owner's partitions handed to the workers that followed them."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.core.stage import Stage
from streams.settings import Settings
from tests.conftest import NewTopicFactory
from tests.integration.test_stage import Counting, changelog_ends, until

PARTITIONS = tuple(range(6))


def restored(stage: Stage) -> float:
    sample = "passerelle_restored_records_total"
    return stage.metrics.registry.get_sample_value(sample, {"table": "counting"}) or 0.0


def on_disk(counting: Counting, name: str) -> set[int]:
    """The partitions a worker has a store folder of."""
    folder = counting.tmp_path / name / counting.app_id / "counting"
    return {int(d.name.rsplit("-", 1)[1]) for d in folder.iterdir()} if folder.is_dir() else set()


def owned(stage: Stage) -> set[int]:
    return {tp.partition for tp in stage.ownership.partitions}


def copies(stage: Stage) -> dict[int, int]:
    return stage.standby.copies() if stage.standby is not None else {}


@pytest.mark.parametrize("k", [0, 1])
async def test_k_standby_copies_are_kept_and_take_over(
    settings: Settings, new_topic: NewTopicFactory, tmp_path: Path, k: int
) -> None:
    """Three workers, six partitions: each worker owns two and follows 2k others' (none
    of its own); its disk holds only those; when one leaves, under k = 1 each of its
    partitions goes to the worker that followed it, which restores nothing, and under
    k = 0 the new owners restore from the changelog."""
    counting = await Counting.create(settings, new_topic, tmp_path, partitions=len(PARTITIONS))
    await counting.produce(100, PARTITIONS)
    names = ("a", "b", "c")
    workers = dict(zip(names, (counting.start(n, standby_replicas=k) for n in names), strict=True))
    await until(
        lambda: (
            all(len(owned(w)) == 2 and w.ready.is_set() for w in workers.values())
            and sum(w.processed for w in workers.values()) == 600
        ),
        "two partitions owned by each worker, and every record counted",
        lambda: {n: (owned(w), w.ready.is_set(), w.processed) for n, w in workers.items()},
    )
    ends = await changelog_ends(settings, counting.changelog, PARTITIONS)
    await until(
        lambda: (
            sorted(p for w in workers.values() for p in copies(w)) == sorted(PARTITIONS * k)
            and all(ends[p] == at for w in workers.values() for p, at in copies(w).items())
        ),
        f"{k} copy of each partition, each at its changelog's end",
    )
    for name, worker in workers.items():
        assert not owned(worker) & set(copies(worker))
        assert on_disk(counting, name) == owned(worker) | set(copies(worker))

    leaving = workers.pop("a")
    moving = owned(leaving)
    heirs = {p: next((w for w in workers.values() if p in copies(w)), None) for p in moving}
    before = sum(restored(w) for w in workers.values())
    await counting.stop(leaving)
    await until(
        lambda: (
            sorted(p for w in workers.values() for p in owned(w)) == list(PARTITIONS)
            and all(w.ready.is_set() for w in workers.values())
        ),
        "the two workers left own every partition",
    )
    after = sum(restored(w) for w in workers.values())
    if k == 1:
        assert all(heir is not None and p in owned(heir) for p, heir in heirs.items())
        assert after == before  # each heir's copy held every record already
    else:
        assert after > before  # no copy: the new owners read the changelogs
    counted = sum(w.processed for w in workers.values())
    await counting.produce(10, PARTITIONS)
    await until(
        lambda: sum(w.processed for w in workers.values()) == counted + 60, "the two count on"
    )
    await counting.stop_all()
