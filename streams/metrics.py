"""Prometheus metrics, built on an injected registry.

Labels are bank ids and enums only: never an account, a psid or an amount.
The worker exposes one `Metrics` on its web port at /metrics; tests build
their own on a fresh registry so they never share state.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

NAMESPACE = "passerelle"

# End-to-end latency (event time or ingest time → notification emitted).
# The exactly-once commit interval puts a floor of a few hundred ms under the
# p50, backfills and outages push the tail to minutes, and an SLO of "within
# a second" must fall on a bucket edge.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)
# The session timeout is 10 s and heartbeats go every 3 s: lags past a few seconds matter.
LOOP_LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Every label name any metric may carry; a test pins that none can name a person.
ALLOWED_LABELS = frozenset(
    {
        "bank",
        "outcome",
        "reason",
        "kind",
        "source",
        "topic",
        "partition",
        "table",
        "result",
        "stage",
    }
)


class _Registered:
    """Metrics on one registry, with their labelled children made once each."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """`metric.labels(*values)` (in label-name order), made once per label values:
        `labels()` costs microseconds per call and the hot path calls it per record.
        Label values are bank ids, Page ids and enums, so there are few children."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class Metrics(_Registered):
    """Every metric of one worker, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.events_in = Counter(
            "events_in",
            "Records read from the ingest topics.",
            ["bank"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.decisions = Counter(
            "decisions",
            "Consent-gate decisions on transactions.",
            ["bank", "outcome", "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.notifications = Counter(
            "notifications",
            "Notifications emitted, by kind.",
            ["kind"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.dlq = Counter(
            "dlq",
            "Records sent to the dead-letter queue, by reason code.",
            ["bank", "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.inbound = Counter(
            "inbound",
            "Customers' messages, by page and outcome: in (read), and what became of each: "
            "answered, refused (no account linked), rate_limited, dlq.",
            ["page", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.feedback = Counter(
            "feedback",
            "Delivery reports read from messenger.feedback.v1, by bank and outcome "
            "(BLOCKED and INVALID_RECIPIENT mute the consent: UNREACHABLE).",
            ["bank", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.erasures = Counter(
            "erasures",
            "Accounts whose state was erased when consent ended.",
            ["bank", "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.latency = Histogram(
            "e2e_latency_seconds",
            "From event time or ingest time to notification emitted.",
            ["source"],
            buckets=LATENCY_BUCKETS_S,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Records behind the end of each input partition.",
            ["topic", "partition"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.recovery_remaining = Gauge(
            "recovery_remaining",
            "Changelog records left to restore, per table partition.",
            ["table", "partition"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.restored_records = Counter(
            "restored_records",
            "Changelog records read to open partitions (few where a standby copy was warm).",
            ["table"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.standby_records = Counter(
            "standby_records",
            "Changelog records applied to standby copies of partitions owned elsewhere.",
            ["table"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.table_keys = Gauge(
            "table_keys",
            "Keys held in each stage's RocksDB tables on this worker (RocksDB's estimate).",
            ["table"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.store_memory = Gauge(
            "store_memory_bytes",
            "Memory of this worker's RocksDB stores together: memtables, block cache.",
            ["kind"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.stage_ready = Gauge(
            "stage_ready",
            "1 when the stage has its partitions, its state restored and its consents read.",
            ["stage"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.tick_time = Gauge(
            "tick_time_seconds",
            "Time carried by the newest tick applied (consent expiry and digests run on ticks).",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.rebalances = Counter(
            "rebalances",
            "Partition assignments received.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.loop_lag = Histogram(
            "event_loop_lag_seconds",
            "How late the worker's event loop ran a timer: how long something held it "
            "(heartbeats, fetches and /metrics wait that long).",
            buckets=LOOP_LAG_BUCKETS_S,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.transactions = Counter(
            "transactions",
            "Kafka transactions ended, by result (commit, abort).",
            ["result"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.outputs_left_out = Counter(
            "outputs_left_out",
            "Optional outputs (a bank's outcome feed) left out: their topic is missing or "
            "not ours to write.",
            ["stage", "topic"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.authorization_failures = Counter(
            "authorization_failures",
            "Requests of a stage the broker refused for want of an ACL, by the error.",
            ["stage", "error"],
            namespace=NAMESPACE,
            registry=registry,
        )


# From a notification's creation to the Send API's answer: the topic's wait, the
# Page's pacing and the API's own latency (tens of ms to seconds; retries, minutes).
DELIVERY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)


class DeliveryMetrics(_Registered):
    """The delivery worker's metrics (`passerelle deliver`), on its own registry.
    Labels are Page ids and enums: never a psid."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.deliveries = Counter(
            "deliveries",
            "Notifications done, by page and outcome: DELIVERED, the API's refusals (BLOCKED, "
            "INVALID_RECIPIENT, UNAVAILABLE, OUTSIDE_WINDOW), drops before sending (EXPIRED, "
            "CONSENT_ENDED: the barrier), PAGE_STOPPED, FAILED (dead-lettered), DUPLICATE "
            "(already delivered: not sent again), UNREADABLE (dead-lettered).",
            ["page", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.latency = Histogram(
            "delivery_latency_seconds",
            "From the notification's created_at to the Send API's answer that delivered it.",
            buckets=DELIVERY_BUCKETS_S,
            namespace=NAMESPACE,
            registry=registry,
        )
        self.retries = Counter(
            "delivery_retries",
            "Send API calls tried again, by page and reason: throttled (a rate limit), "
            "server_error (5xx, a temporary or an unknown error), timeout.",
            ["page", "reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.page_stopped = Gauge(
            "delivery_page_stopped",
            "1 while a Page's access token is refused: nothing is sent for it until its "
            "token file changes.",
            ["page"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self.uncertain = Counter(
            "delivery_uncertain",
            "Calls in flight when the worker last stopped: each may reach the customer twice.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.in_flight = Gauge(
            "delivery_pending",
            "Notifications read and not yet done (queued behind their customer or page, or "
            "in a call).",
            namespace=NAMESPACE,
            registry=registry,
        )
