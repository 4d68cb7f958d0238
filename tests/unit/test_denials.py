"""Authorization failures are found wherever a stage meets them: in a failed send's
causes, under a StageFailed, or raised as they are; anything else is not one."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from prometheus_client import CollectorRegistry

from streams.core.batches import SendFailed
from streams.core.denials import Refusals, denials
from streams.core.handling import StageFailed
from streams.metrics import Metrics


def test_a_refused_batch_among_a_failed_sends_causes_is_named_once() -> None:
    refused = [
        TopicAuthorizationFailedError(),
        TopicAuthorizationFailedError(),
        KafkaTimeoutError(),
    ]
    assert denials(SendFailed("3 of 4 record batches failed", refused)) == [
        "TopicAuthorizationFailedError"
    ]


def test_a_stage_failure_caused_by_a_refusal_names_it() -> None:
    failure = StageFailed("opening the assigned partitions failed")
    failure.__cause__ = TransactionalIdAuthorizationFailed()
    assert denials(failure) == ["TransactionalIdAuthorizationFailed"]


def test_a_refusal_raised_as_it_is_is_named() -> None:
    assert denials(GroupAuthorizationFailedError()) == ["GroupAuthorizationFailedError"]


def test_other_failures_are_not_refusals() -> None:
    assert denials(SendFailed("1 of 1 record batches failed", [KafkaTimeoutError()])) == []
    assert denials(RuntimeError("boom")) == []


def test_each_refusal_is_counted_by_stage_and_error_and_said_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three refused batches count three; the log says it once (a refused batch is
    retried, and would say so each time); another failure counts nothing."""
    registry = CollectorRegistry()
    refused = Refusals(Metrics(registry), "outcomes")
    for _ in range(3):
        refused(SendFailed("x", [TopicAuthorizationFailedError()]))
    refused(RuntimeError("not one"))
    labels = {"stage": "outcomes", "error": "TopicAuthorizationFailedError"}
    assert registry.get_sample_value("passerelle_authorization_failures_total", labels) == 3.0
    said = [r for r in caplog.records if "the broker refused" in r.getMessage()]
    assert len(said) == 1
