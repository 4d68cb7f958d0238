"""Event log lines: JSON carries the event's facts as fields; text stays faust's."""

from __future__ import annotations

import json
import logging

import pytest

from streams.logs import EVENT_FIELDS, JsonFormatter, event, logging_config


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "streams.agents.ingest",
        logging.WARNING,
        __file__,
        1,
        "dead-lettered %s-%d@%d: %s",
        ("t", 0, 5, "BAD_MAGIC_BYTE"),
        None,
    )
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_the_message_and_the_event_fields() -> None:
    facts = event("dlq", topic="t", partition=0, offset=5, bank="b", reason="BAD_MAGIC_BYTE")
    line = json.loads(JsonFormatter().format(_record(**facts)))
    assert line["message"] == "dead-lettered t-0@5: BAD_MAGIC_BYTE"
    assert line["level"] == "WARNING" and line["logger"] == "streams.agents.ingest"
    assert {k: line[k] for k in facts} == facts
    assert line["ts"].endswith("Z")


def test_a_json_line_leaves_out_what_is_not_an_event_field() -> None:
    line = json.loads(JsonFormatter().format(_record(payload=b"secret", psid="123")))
    assert "payload" not in line and "psid" not in line


def test_an_event_refuses_a_field_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="psid"):
        event("dlq", psid="123")
    assert "psid" not in EVENT_FIELDS and "amount" not in EVENT_FIELDS


def test_text_format_keeps_fausts_logging_and_json_configures_the_root() -> None:
    assert logging_config("text", "info") is None
    config = logging_config("json", "info")
    assert config is not None
    assert config["root"] == {"level": "INFO", "handlers": ["default"]}
    assert config["formatters"]["json"]["()"] is JsonFormatter
