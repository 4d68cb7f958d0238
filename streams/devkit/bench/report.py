"""What a bench run reports: its figures, as a table, JSON and a chart."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


@dataclass(frozen=True)
class Throughput:
    name: str
    records: int
    seconds: float
    cpu_s: float = 0.0
    """The worker process's CPU seconds (user + system) over the same span; 0: not a
    worker (the baselines run in the bench's own process)."""

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per record (0: not measured)."""
        return self.cpu_s / self.records * 1e6 if self.records else 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds


@dataclass(frozen=True)
class Latency:
    guarantee: str
    offered: float  # events per second; 0 for saturation
    achieved: float
    notifications: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    share: float = 0.0
    """The offered rate as a share of the run's own measured capacity (0: a fixed rate)."""


@dataclass(frozen=True)
class State:
    accounts: int
    rss_mib: float
    disk_mib: float
    changelog_records: int
    restore_s: float
    store_mib: float = 0.0
    """Of the RSS, what the RocksDB stores held in memtables and block cache then."""


@dataclass(frozen=True)
class Footprint:
    """What the throughput phase's pipelines left in one topic's log on the broker's disk
    (replication factor 1), and per transaction decided."""

    topic: str
    """The topic, its app id or bank written `<app>` or `<bank>`."""
    bytes: int
    transactions: int
    guarantee: str = ""
    """The guarantee of the one app whose topic it is; "" for a topic every run shares."""

    @property
    def label(self) -> str:
        return f"{self.topic} ({self.guarantee})" if self.guarantee else self.topic

    @property
    def per_transaction(self) -> float:
        return self.bytes / self.transactions if self.transactions else 0.0


@dataclass
class Report:
    broker: str
    partitions: int
    records: int
    rounds: int
    throughput: list[Throughput] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    state: list[State] = field(default_factory=list)
    delivery: list[Throughput] = field(default_factory=list)
    footprint: list[Footprint] = field(default_factory=list)

    def throughput_of(self, name: str) -> float:
        return next(t.rate for t in self.throughput if t.name == name)

    def ratio(self, name: str) -> float:
        base = self.throughput[0].rate
        return next(t.rate for t in self.throughput if t.name == name) / base

    def table(self) -> str:
        base = self.throughput[0].rate
        title = f"throughput (median of {self.rounds})"
        lines = [
            f"{title:34} {'records':>9} {'seconds':>8} {'rec/s':>9} {'ratio':>6} {'CPU µs':>7}"
        ]
        for t in self.throughput:
            ratio, cpu = t.rate / base, f"{t.cpu_us:>7.0f}" if t.cpu_s else ""
            lines.append(
                f"{t.name:34} {t.records:>9} {t.seconds:>8.2f} {t.rate:>9,.0f} {ratio:>6.3f} {cpu}"
            )
        lines.append(f"\n{'latency (bank → notification)':34} {'offered':>8} {'achieved':>9} "
                     f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")  # fmt: skip
        for r in self.latency:
            offered = f"{r.offered:,.0f}/s" if r.offered else "max"
            offered = f"{r.share:.0%} {offered}" if r.share else offered
            lines.append(
                f"{r.guarantee:34} {offered:>8} {r.achieved:>8,.0f}/s "
                f"{r.p50_ms:>8.0f} {r.p95_ms:>8.0f} {r.p99_ms:>8.0f}"
            )
        lines.append(
            f"\n{'state':34} {'RSS MiB':>8} {'of it RocksDB':>13} {'disk MiB':>9} "
            f"{'changelog':>10} {'restore s':>9}"
        )
        for s in self.state:
            lines.append(
                f"{f'{s.accounts:,} accounts':34} {s.rss_mib:>8.0f} {s.store_mib:>13.0f} "
                f"{s.disk_mib:>9.1f} {s.changelog_records:>10,} {s.restore_s:>9.1f}"
            )
        if self.delivery:
            lines.append(f"\n{'delivery (one worker, 256 calls)':34} {'sent':>9} {'seconds':>8} "
                         f"{'sent/s':>9} {'ratio':>6}")  # fmt: skip
            first = self.delivery[0].rate
            for t in self.delivery:
                lines.append(
                    f"{t.name:34} {t.records:>9} {t.seconds:>8.2f} {t.rate:>9,.0f} "
                    f"{t.rate / first:>6.3f}"
                )
        if self.footprint:
            lines.append(f"\n{'broker log bytes (RF 1)':44} {'bytes':>12} {'per transaction':>16}")
            per_guarantee: dict[str, float] = {}
            for f in self.footprint:
                lines.append(f"{f.label:44} {f.bytes:>12,} {f.per_transaction:>16,.0f}")
                per_guarantee[f.guarantee] = per_guarantee.get(f.guarantee, 0.0) + f.per_transaction
            shared = per_guarantee.pop("", 0.0)
            total = shared + max(per_guarantee.values(), default=0.0)
            lines.append(f"{'total, the costlier guarantee':44} {'':>12} {total:>16,.0f}")
        return "\n".join(lines)


def write(report: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = asdict(report)
    data["ratios"] = {t.name: report.ratio(t.name) for t in report.throughput}
    data["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    chart(report, out / "latest.png")


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [t.name.replace("pipeline, ", "") for t in report.throughput]
    ratios = [report.ratio(t.name) for t in report.throughput]
    bars = left.bar(names, ratios, color=["#999999", "#3b7dd8", "#d8663b"])
    left.bar_label(
        bars,
        labels=[
            f"{r:.2f}×\n{t.rate:,.0f}/s" for r, t in zip(ratios, report.throughput, strict=True)
        ],
    )
    left.axhline(0.25, color="#3b7dd8", linestyle=":", label="goal at_least_once 0.25×")
    left.axhline(0.15, color="#d8663b", linestyle=":", label="goal exactly_once 0.15×")
    left.set_ylim(0, 1.25)
    left.set_ylabel("throughput / bare aiokafka")
    left.set_title("Throughput, same broker, same run")
    left.legend(fontsize=8)
    for guarantee, color in (("at_least_once", "#3b7dd8"), ("exactly_once", "#d8663b")):
        rows = [r for r in report.latency if r.guarantee == guarantee and r.offered]
        for q, style in (("p50_ms", "-"), ("p99_ms", "--")):
            right.plot([r.offered for r in rows], [getattr(r, q) for r in rows], style,
                       marker="o", color=color, label=f"{guarantee} {q[:3]}")  # fmt: skip
    right.axhline(50, color="#3b7dd8", linestyle=":", label="goal at_least_once p99 50 ms")
    right.axhline(500, color="#d8663b", linestyle=":", label="goal exactly_once p99 500 ms")
    right.set_xlabel("offered rate (transactions/s)")
    right.set_ylabel("bank → notification (ms)")
    right.set_yscale("log")
    right.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    right.set_yticks([20, 50, 100, 200, 500, 1000])
    right.set_title("End-to-end latency by offered rate")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
