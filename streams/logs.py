"""Log lines: one per event of interest, as text or as JSON.

An event of interest carries its facts in `extra=event(...)`: what happened
and where (topic, partition, offset), never an account number, a psid or an
amount; accounts appear only as keyed hashes. The text format prints the
message; the JSON format (`PASSERELLE_LOG_FORMAT=json`) prints one object per
line with the facts as fields, for a log pipeline to index.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# The fields an event may carry; anything else in `extra` is not printed.
EVENT_FIELDS = (
    "event",
    "stage",
    "topic",
    "partition",
    "offset",
    "bank",
    "reason",
    "account_hash",
    "records",
    "partitions",
    "kept",
    "closed",
    "seconds",
    "store",
    "case",
)


def event(name: str, **facts: Any) -> dict[str, Any]:
    """The `extra` of a log call for one event of interest."""
    unknown = set(facts) - set(EVENT_FIELDS)
    if unknown:
        raise ValueError(f"not an event field: {sorted(unknown)}")
    return {"event": name, **facts}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the event's fields."""

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)  # UTC, as the Z says

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(log_format: str, level: str) -> dict[str, Any] | None:
    """The dictConfig the worker's logging uses; None keeps faust's text format."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def quiet_client_loggers() -> None:
    """aiokafka logs every connection and rebalance step at INFO; a logger left at
    DEBUG also costs CPU on every send even when nothing is printed. faust's timers
    (`mode.timers`) log each late wake-up at INFO, every ~2 s under a backlog (238
    lines in a 1 M-account run): the worker's own watch measures the loop's lag
    (`passerelle_event_loop_lag_seconds`) and logs a hold of 3 s or more (`loop_held`)."""
    for noisy in ("aiokafka", "kafka", "mode.timers"):
        logger = logging.getLogger(noisy)
        logger.setLevel(max(logger.level, logging.WARNING))  # never louder than set
