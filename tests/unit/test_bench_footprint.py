"""The bench's broker footprint (`devkit.bench.measure.footprint`): each topic's log bytes
on disk, per transaction, from a broker's log folder as Kafka lays it out."""

from __future__ import annotations

from pathlib import Path

from streams import catalog
from streams.devkit.bench.footprint import footprint
from streams.devkit.bench.report import Report, Throughput

BANK = "bench-1-tp"
APPS = {
    ("at_least_once", 0): "bench-1-at_least_once-0",
    ("exactly_once", 0): "bench-1-exactly_once-0",
}


def segment(data: Path, topic: str, partition: int, size: int) -> None:
    folder = data / f"{topic}-{partition}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00000000000000000000.log").write_bytes(b"x" * size)
    (folder / "00000000000000000000.index").write_bytes(b"\0" * 10_000)  # preallocated


def test_each_topic_is_counted_once_per_writer_and_divided_by_what_it_carried(
    tmp_path: Path,
) -> None:
    """The bank's topic per record; an app's own topic per record of that app's run, by
    guarantee; a shared output per record of every run; index files are not data."""
    segment(tmp_path, catalog.bank_topic_name(BANK), 0, 600)
    segment(tmp_path, catalog.bank_topic_name(BANK), 1, 400)
    segment(tmp_path, f"{APPS[('at_least_once', 0)]}.accounts", 0, 2_000)
    segment(tmp_path, f"{APPS[('exactly_once', 0)]}.accounts", 0, 3_000)
    segment(tmp_path, catalog.AUDIT, 3, 8_000)
    segment(tmp_path, "bench-1.bare-out", 0, 99_999)  # the baseline's: not the pipeline's
    rows = {f.label: f.per_transaction for f in footprint(tmp_path, BANK, APPS, 10)}
    assert rows == {
        "bank.<bank>.transactions.v1": 100.0,
        "<app>.accounts (at_least_once)": 200.0,
        "<app>.accounts (exactly_once)": 300.0,
        catalog.AUDIT: 400.0,
    }
    base = [Throughput("bare aiokafka passthrough", 10, 1.0)]
    report = Report("b", 4, 10, 1, base, footprint=footprint(tmp_path, BANK, APPS, 10))
    assert report.table().splitlines()[-1].split()[-1] == "800"  # bank, audit, the costlier
