"""`passerelle deliver` as a service: the worker, its web port, and a clean stop.

The web port (`PASSERELLE_DELIVER_PORT`, 127.0.0.1 only) serves `/healthz`
(the event loop answers), `/readyz` (the consumer has joined its group and
fetched) and `/metrics` (the delivery metrics, `streams.metrics.DeliveryMetrics`).
SIGTERM and SIGINT stop the worker: what was read is finished (within a bound)
and committed before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from streams.codec import Codec, EmbeddedRegistry
from streams.errors import PasserelleError
from streams.metrics import DeliveryMetrics
from streams.security import MESSENGER_GROUP_PREFIX
from streams.settings import DeliverySettings, Settings
from streams.tools.deliver import GROUP, Deliverer

TEXT_FORMAT = "text/plain; version=0.0.4"


def pages(worker: Deliverer, registry: CollectorRegistry) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        ready = worker.ready.is_set()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = TEXT_FORMAT
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(topic: str, group: str = GROUP, start: str = "earliest") -> None:
    """Run one delivery worker, configured by the environment, until SIGTERM or SIGINT."""
    if not group.startswith(MESSENGER_GROUP_PREFIX):
        raise PasserelleError(f"--group must start with {MESSENGER_GROUP_PREFIX} (the ACLs')")
    settings, delivery = Settings.from_env(), DeliverySettings.from_env()
    os.umask(0o077)  # the journal names what was sent to whom: ours only
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    registry = CollectorRegistry()
    codec = Codec(EmbeddedRegistry.load(settings.schemas_dir))
    worker = Deliverer(settings, delivery, codec, DeliveryMetrics(registry), topic, group, start)
    runner = web.AppRunner(pages(worker, registry), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", delivery.web_port).start()
    except OSError as exc:
        await runner.cleanup()
        raise PasserelleError(
            f"cannot listen on 127.0.0.1:{delivery.web_port} ({exc.strerror}): "
            "set PASSERELLE_DELIVER_PORT"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.run(stop)
    finally:
        await runner.cleanup()
