"""How long the worker's event loop is held.

Everything of a worker shares one asyncio loop: both stages' batches, their
consumers' heartbeats, fetches and the web server. A handler run, a RocksDB
call or a restore that holds the loop for seconds delays them all, and a
member whose heartbeats wait past the session timeout is dropped from its
group. The watch sleeps a short interval again and again; how much later than
asked it wakes is how long the loop was held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mode import Service

from streams.logs import event
from streams.metrics import Metrics

log = logging.getLogger(__name__)

INTERVAL_S = 0.25
# A hold this long is logged: a third of the session timeout.
WARN_S = 3.0


class LoopWatch(Service):
    """Observes the loop's lag into `passerelle_event_loop_lag_seconds`."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        self.metrics = metrics
        super().__init__(**kwargs)

    @Service.task
    async def _watch(self) -> None:
        while not self.should_stop:
            started = time.monotonic()
            await asyncio.sleep(INTERVAL_S)
            held = max(0.0, time.monotonic() - started - INTERVAL_S)
            self.metrics.loop_lag.observe(held)
            if held >= WARN_S:
                log.warning(
                    "the event loop was held for %.1fs (heartbeats wait meanwhile)",
                    held,
                    extra=event("loop_held", seconds=round(held, 3)),
                )
