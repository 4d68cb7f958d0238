"""What the brokers refuse a stage: authorization failures, and optional outputs left out.

A worker whose ACLs lack something (a bank added without `acls apply --bank`,
an app id renamed, a binding pruned by hand) meets it as an aborted batch that
is retried, or as a fetch or join that fails and stops the stage. Either way
the SRE sees it under one name: `passerelle_authorization_failures_total{stage,
error}` and an `authorization_denied` log line (at most once a minute per stage
and error: a refused batch is retried), never only a retry loop.

An optional output (`Emit.optional`: a bank's outcome feed) whose topic the
brokers do not show, missing or not the worker's to write, is left out rather
than hold back the batch: `Omissions` counts it
(`passerelle_outputs_left_out_total{stage,topic}`) and logs `output_left_out`
at most once a minute per topic.
"""

from __future__ import annotations

import logging
import time

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from streams.logs import event
from streams.metrics import Metrics

log = logging.getLogger(__name__)

DENIALS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    ClusterAuthorizationFailedError,
)


def denials(exc: BaseException) -> list[str]:
    """The authorization errors in `exc`, in what caused it, and in the `causes` a
    failed send carries (one per record batch refused): their class names, once each."""
    found: set[str] = set()
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DENIALS):
            found.add(type(current).__name__)
        todo += [c for c in (current.__cause__, current.__context__) if c is not None]
        todo += list(getattr(current, "causes", ()))
    return sorted(found)


# Each refusal and each output left out is counted; it is said at most this often per
# stage and error (or topic): a batch refused is retried, and would say so each time.
SAY_EVERY_S = 60.0


class _Said:
    """When each thing was last said."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def due(self, what: str) -> bool:
        """Whether `what` may be said now (then it counts as said)."""
        if time.monotonic() - self._at.get(what, -SAY_EVERY_S) < SAY_EVERY_S:
            return False
        self._at[what] = time.monotonic()
        return True


class Refusals:
    """Counts the authorization errors a stage meets, and says each now and then."""

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self.metrics, self.stage, self._said = metrics, stage, _Said()

    def __call__(self, exc: BaseException) -> None:
        """Count and log each authorization error in `exc` (nothing if there is none)."""
        for error in denials(exc):
            self.metrics.child(self.metrics.authorization_failures, self.stage, error).inc()
            if self._said.due(error):
                log.warning(
                    "the broker refused stage %s: %s; see `passerelle acls show --check`",
                    self.stage,
                    error,
                    extra=event("authorization_denied", stage=self.stage, reason=error),
                )


class Omissions:
    """Counts the optional outputs a stage left out, by topic, and says so now and then."""

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self.metrics, self.stage, self._said = metrics, stage, _Said()

    def __call__(self, topic: str, count: int) -> None:
        self.metrics.child(self.metrics.outputs_left_out, self.stage, topic).inc(count)
        if self._said.due(topic):
            log.warning(
                "stage %s left out %d records for %s: the brokers do not show the topic to "
                "us (not created, or not ours to write)",
                self.stage,
                count,
                topic,
                extra=event("output_left_out", stage=self.stage, topic=topic, records=count),
            )
