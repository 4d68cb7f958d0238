"""A Stage as a mode Service, so the faust App starts and stops it with everything else."""

from __future__ import annotations

import asyncio
from typing import Any

from mode import Service

from streams.core.stage import Stage
from streams.core.ticks import Ticker


class StageService(Service):
    """Runs one stage (and its ticker); a stage that fails crashes the worker."""

    def __init__(self, stage: Stage, ticker: Ticker | None = None, **kwargs: Any) -> None:
        self.stage = stage
        self.ticker = ticker
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._stage_started = False
        super().__init__(**kwargs)

    @property
    def label(self) -> str:
        return f"Stage[{self.stage.spec.name}]"

    async def on_start(self) -> None:
        self._stage_started = True
        self.add_future(self._run_stage())
        if self.ticker is not None:
            self.add_future(self.ticker.run(self._stopping))

    async def _run_stage(self) -> None:
        try:
            await self.stage.run()
        except Exception as exc:
            self.stage.refused(exc)
            await self.crash(exc)
        finally:
            self._done.set()

    async def on_stop(self) -> None:
        """Let the batch in flight commit, then close producers and leave the group."""
        self._stopping.set()
        self.stage.stop()
        if self._stage_started:  # a worker that failed while starting has no stage to wait for
            await self._done.wait()
