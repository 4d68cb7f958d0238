"""The faust App of a Passerelle worker, and `main()`.

The App is the worker's shell: its lifecycle, signals, sensors and web server
(`/healthz`, `/readyz`, `/metrics`). The stream processing itself runs in our
transactional stages (`streams.core`), started by the App as services: faust's
own consumer, agents and table manager are not started, because faust's
exactly-once does not hold as shipped (docs/core.md says where and why).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from itertools import chain

import faust
from faust.app.base import BootStrategy
from mode import ServiceT

from streams import kafka
from streams.codec import EmbeddedRegistry
from streams.core.loopwatch import LoopWatch
from streams.metrics import Metrics
from streams.settings import Settings


class PasserelleBoot(BootStrategy):
    """Start sensors, the web server and our stages; no faust consumer or agents."""

    enable_kafka = False

    def server(self) -> Iterable[ServiceT]:
        stages: list[ServiceT] = list(getattr(self.app, "stages", []))
        watch = [w] if (w := getattr(self.app, "watch", None)) is not None else []
        return chain(self.sensors(), self.web_server(), watch, stages)


class PasserelleApp(faust.App):
    BootStrategy = PasserelleBoot
    stages: list[ServiceT]
    watch: ServiceT | None = None


def create_app(
    settings: Settings, stages: list[ServiceT], metrics: Metrics, registry: EmbeddedRegistry
) -> PasserelleApp:
    """The App of one worker: its identity, web port (where `registry` is served too)
    and stages."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app = PasserelleApp(
        settings.app_id,
        **kafka.faust_broker_options(settings),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # where it listens (web_host only names it in URLs)
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
    )
    app.stages = stages
    app.watch = LoopWatch(metrics)
    from streams import views  # registers the pages on this app

    views.register(app, stages, metrics, registry)
    return app


def main(app: PasserelleApp, settings: Settings, loglevel: str = "info") -> None:
    """Run the worker until SIGTERM or SIGINT; exits the process with its status."""
    from streams.logs import logging_config, quiet_client_loggers

    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        logging_config=logging_config(settings.log_format, loglevel),
    )
    quiet_client_loggers()
    # What the worker has built so far (modules, the app, its clients' classes) lives
    # as long as the process: out of the collector's reach, a full collection walks
    # only what was made since. It used to walk all of it, 44-53 ms with the loop
    # held, every 5-10 s under load (gc.callbacks in a scratch run at 1 000/s);
    # frozen, 3-6 ms.
    gc.collect()
    gc.freeze()
    worker.execute_from_commandline()
