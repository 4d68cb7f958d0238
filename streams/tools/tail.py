"""`passerelle tail`: the messaging side's view of the delivery topic, read_committed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from streams import kafka, model
from streams.catalog import NOTIFICATIONS
from streams.codec import Codec
from streams.settings import Settings

Say = Callable[[str], None]


def as_text(n: model.Notification) -> str:
    """One line a person reads: kind, locale, the recipient masked, the text."""
    quiet = " (silent)" if n["envelope"]["silent"] else ""
    return f"{n['kind']:<17} {n['locale']:<5} psid …{n['psid'][-4:]}  {n['text']}{quiet}"


async def tail(
    settings: Settings,
    codec: Codec,
    say: Say = print,
    from_beginning: bool = False,
    json_lines: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Print notifications as they are committed, until `stop` is set; returns how many."""
    # Asked first, with a consumer of its own: a consumer subscribed to a topic that does
    # not exist waits for it, and would never say so.
    await kafka.require_topics(settings, [NOTIFICATIONS], "run `passerelle topics create`")
    consumer = kafka.consumer(
        settings,
        NOTIFICATIONS,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    shown = 0
    try:
        await consumer.start()
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    n: model.Notification = codec.decode(model.NOTIFICATION, record.value)  # type: ignore[assignment]  # decoded Notification
                    say(json.dumps(n, ensure_ascii=False) if json_lines else as_text(n))
                    shown += 1
    finally:
        await consumer.stop()
    return shown
