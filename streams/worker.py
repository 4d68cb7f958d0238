"""Running stages as a worker process: signals, logging, the ticker beside them."""

from __future__ import annotations

import asyncio
import logging
import signal

from streams.core.stage import Stage, StageSpec
from streams.core.ticks import Ticker
from streams.settings import Settings

log = logging.getLogger(__name__)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiokafka logs every connection and rebalance step at INFO; and a logger
    # left at DEBUG costs CPU on every send even when nothing is printed.
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run(spec: StageSpec, settings: Settings, ticker: Ticker | None = None) -> None:
    """Run one stage (and its ticker) until SIGTERM or SIGINT, then stop cleanly."""
    stage = Stage(spec, settings)
    stopping = asyncio.Event()

    def stop() -> None:
        log.info("stopping")
        stopping.set()
        stage.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    log.info("worker starting: stage %s, %s", spec.name, settings.processing_guarantee)
    tasks = [asyncio.create_task(stage.run(), name=f"stage-{spec.name}")]
    if ticker is not None:
        tasks.append(asyncio.create_task(ticker.run(stopping), name="ticker"))
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop()
    await asyncio.gather(*tasks)
    log.info("worker stopped")
