"""`passerelle ask`: say something to the Page as a customer would, and print the answers.

It writes one `InboundMessage` to `messenger.inbound.v1`, keyed by the psid,
as a messaging worker does when Messenger delivers a message; then reads the
notifications topic (read_committed) for the RESPONSE notifications to that
psid about that message (their `occurred_at` is the message's `sent_at`), one
per account of the psid, and prints them. It waits `wait_s` for the first and
a short while for the others.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from streams import kafka, model
from streams.catalog import INBOUND, NOTIFICATIONS
from streams.codec import Codec
from streams.errors import PasserelleError
from streams.settings import Settings
from streams.tools.tail import as_text

# After the first answer, how long to wait for the answers about the psid's other accounts.
MORE_WITHIN_S = 2.0


def message(psid: str, page_id: str, text: str | None, payload: str | None) -> model.InboundMessage:
    """What Messenger would deliver: a new `mid`, sent now."""
    if not (text or payload):
        raise PasserelleError("say something: a text, or --payload")
    return {
        "mid": f"m.ask-{uuid.uuid4().hex[:16]}",
        "psid": psid,
        "page_id": page_id,
        "text": text,
        "payload": payload,
        "sent_at": int(time.time() * 1000),
    }


async def ask(
    settings: Settings,
    codec: Codec,
    said: model.InboundMessage,
    wait_s: float,
    say: Callable[[str], None] = print,
) -> list[model.Notification]:
    """Write `said`, then print and return the answers to it."""
    reader = kafka.consumer(settings, group_id=None, auto_offset_reset="latest")
    producer = kafka.producer(settings)
    answers: list[model.Notification] = []
    try:
        await reader.start()
        await kafka.check_topics(reader, [INBOUND, NOTIFICATIONS], "run `passerelle topics create`")
        partitions = await kafka.partitions_of(reader, NOTIFICATIONS)
        reader.assign(partitions)
        await reader.seek_to_end(*partitions)
        for tp in partitions:  # fix the positions before the question is written
            await reader.position(tp)
        await producer.start()
        frame = codec.encode(model.INBOUND_MESSAGE, said)
        await producer.send_and_wait(INBOUND, frame, said["psid"].encode())
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    n: model.Notification = codec.decode(model.NOTIFICATION, record.value)  # type: ignore[assignment]  # decoded Notification
                    if (
                        n["kind"] == "RESPONSE"
                        and n["psid"] == said["psid"]
                        and (n["occurred_at"] == said["sent_at"])
                    ):
                        answers.append(n)
                        say(as_text(n))
                        deadline = min(deadline, time.monotonic() + MORE_WITHIN_S)
    finally:
        await producer.stop()
        await reader.stop()
    if not answers:
        raise PasserelleError(
            f"no answer within {wait_s:g} s: is a worker running? (a psid no consent "
            "names is answered once a day, a flood not at all)"
        )
    return answers
