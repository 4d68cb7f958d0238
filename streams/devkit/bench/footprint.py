"""What a bench run's pipelines leave on the broker's disk, topic by topic: the inputs
of the capacity model (docs/capacity.md), measured instead of assumed."""

from __future__ import annotations

from pathlib import Path

from streams import catalog
from streams.devkit.bench.report import Footprint


def footprint(
    data_dir: Path, bank: str, apps: dict[tuple[str, int], str], records: int
) -> list[Footprint]:
    """The bytes of each topic's log segments (`*.log`) on the broker's disk, per
    transaction: the bank's topic was written once; each app's own topics once per app
    (by guarantee); the shared outputs and Kafka's own topics once per pipeline run."""
    sizes: dict[str, int] = {}
    for folder in data_dir.iterdir():
        topic, _, partition = folder.name.rpartition("-")
        if folder.is_dir() and partition.isdigit():
            logs = sum(f.stat().st_size for f in folder.glob("*.log"))
            sizes[topic] = sizes.get(topic, 0) + logs
    rows = [
        Footprint(
            "bank.<bank>.transactions.v1", sizes.pop(catalog.bank_topic_name(bank), 0), records
        )
    ]
    by_role: dict[tuple[str, str], list[int]] = {}
    for (guarantee, _), app in apps.items():
        for topic in [t for t in sizes if t.startswith(f"{app}.")]:
            role = (f"<app>{topic[len(app) :]}", guarantee)
            by_role.setdefault(role, []).append(sizes.pop(topic))
    rows += [
        Footprint(topic, sum(b), records * len(b), guarantee)
        for (topic, guarantee), b in sorted(by_role.items())
    ]
    shared = (catalog.AUDIT, catalog.NOTIFICATIONS, catalog.DLQ, catalog.outcomes_topic_name(bank),
              "__consumer_offsets", "__transaction_state")  # fmt: skip
    runs = records * len(apps)
    rows += [Footprint(t.replace(bank, "<bank>"), sizes[t], runs) for t in shared if t in sizes]
    return rows
