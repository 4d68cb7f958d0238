"""The worker's web pages: liveness, readiness, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from streams.core.service import StageService
from streams.metrics import Metrics

TEXT_FORMAT = "text/plain; version=0.0.4"


def register(app: Any, stages: list[Any], metrics: Metrics) -> None:
    stage_services = [s for s in stages if isinstance(s, StageService)]

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        """Alive: the event loop answers."""
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Ready: every stage has its partitions assigned and their state restored."""
        ready = {s.stage.spec.name: s.stage.ready.is_set() for s in stage_services}
        status = 200 if ready and all(ready.values()) else 503
        return web.json({"ready": ready}, status=status)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        """Every metric of this worker, in the Prometheus text format."""
        # aiohttp refuses a charset inside content_type; the format is UTF-8 anyway.
        return web.bytes(generate_latest(metrics.registry), content_type=TEXT_FORMAT)
