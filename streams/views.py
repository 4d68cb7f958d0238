"""The worker's web pages: liveness, readiness, Prometheus metrics, and the embedded
schema registry under the Confluent REST paths (`streams/schema_api.py`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from streams import schema_api
from streams.codec import EmbeddedRegistry
from streams.core.service import StageService
from streams.core.stage import Stage
from streams.metrics import Metrics

TEXT_FORMAT = "text/plain; version=0.0.4"


def register(app: Any, stages: list[Any], metrics: Metrics, registry: EmbeddedRegistry) -> None:
    stage_services = [s for s in stages if isinstance(s, StageService)]
    app.web.web_app.router.add_routes(schema_api.routes(schema_api.SchemaApi(registry)))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        """Alive: the event loop answers."""
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """Ready: every stage has its partitions assigned, their state restored
        and its consents read up to where they ended at assignment."""
        stages = {s.stage.spec.name: readiness(s.stage) for s in stage_services}
        ready = bool(stages) and all(r["ready"] for r in stages.values())
        return web.json({"ready": ready, "stages": stages}, status=200 if ready else 503)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        """Every metric of this worker, in the Prometheus text format."""
        # aiohttp refuses a charset inside content_type; the format is UTF-8 anyway.
        return web.bytes(generate_latest(metrics.registry), content_type=TEXT_FORMAT)


def readiness(stage: Stage) -> dict[str, Any]:
    """What a stage waits for, in offsets: changelog records to restore, input to catch up."""
    catching_up = stage.readiness.catching_up
    return {
        "ready": stage.ready.is_set(),
        "restoring": {str(p): n for p, n in sorted(stage.restoring.items())},
        "catching_up": {f"{tp.topic}-{tp.partition}": end for tp, end in catching_up.items()},
    }
