"""Event log lines: JSON carries the event's facts as fields; text stays faust's."""

from __future__ import annotations

import json
import logging

import pytest

from streams.logs import EVENT_FIELDS, JsonFormatter, event, logging_config, quiet_client_loggers


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


def _event_calls() -> list[tuple[str, str, set[str]]]:
    """Every `event("name", field=...)` call in streams: (file, name, fields)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "streams"
    calls = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "event"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                fields = {k.arg for k in node.keywords if k.arg is not None}
                calls.append((path.name, str(node.args[0].value), fields))
    return calls


def test_every_event_the_code_logs_uses_only_known_fields() -> None:
    """An event with a field outside EVENT_FIELDS raises where it is logged (a store's
    rebuild did, on the path that only runs when a store must be rebuilt): every call in
    the code is checked here, whether or not a test reaches it."""
    calls = _event_calls()
    assert len(calls) > 10  # the reader sees the calls
    assert [
        (f, n, sorted(k - set(EVENT_FIELDS))) for f, n, k in calls if k - set(EVENT_FIELDS)
    ] == []


def test_the_runbook_lists_every_event_the_code_logs() -> None:
    """The SRE's table of events names each event the code can log, with its fields."""
    from pathlib import Path

    runbook = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    missing = {
        (name, field)
        for _, name, fields in _event_calls()
        for field in {"event", *fields}
        if f"| `{name}` |" not in runbook
        or (field != "event" and f"`{field}`" not in _runbook_row(runbook, name))
    }
    assert missing == set()


def _runbook_row(runbook: str, name: str) -> str:
    return next((line for line in runbook.splitlines() if line.startswith(f"| `{name}` |")), "")


def test_the_clients_and_fausts_timers_log_warnings_only() -> None:
    """Under a root logger at INFO (the worker's default), aiokafka's connection steps and
    faust's late-timer lines (INFO) are not printed, their warnings are, and a client
    logger its user set quieter stays so."""
    from mode.timers import logger as timers_logger

    names = ("aiokafka", "kafka", "mode.timers", "")
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("kafka").setLevel(logging.ERROR)
        quiet_client_loggers()
        for name in ("aiokafka", "mode.timers"):
            logger = logging.getLogger(name)
            assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
        assert timers_logger is logging.getLogger("mode.timers")
        assert logging.getLogger("kafka").level == logging.ERROR
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
