"""A Passerelle worker as a subprocess: started, stopped, killed, and asked how it is.

The bench runs the pipeline this way (its own process, as deployed), and so do
the integration tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from streams.errors import PasserelleError
from streams.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The interpreter a worker runs under. `-P` (Python 3.11) keeps the working folder
# off `sys.path`: `python -m streams` would otherwise import a `streams` package
# from wherever it is started, before the one `PYTHONPATH` names, so an A/B of two
# clones run from one folder would run one code twice.
PYTHON = [sys.executable, "-P"]


class Worker:
    """`passerelle worker …` as a subprocess, restartable on the same data folder."""

    def __init__(
        self, settings: Settings, app_id: str, data_dir: Path, guarantee: str, workload: list[str]
    ) -> None:
        self.args = [*PYTHON, "-m", "streams", "worker", *workload]
        self.env = {
            **os.environ,
            "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers,
            "PASSERELLE_APP_ID": app_id,
            "PASSERELLE_DATA_DIR": str(data_dir),
            "PASSERELLE_GUARANTEE": guarantee,
            "PASSERELLE_PARTITIONS": str(settings.partitions),
            "PASSERELLE_WEB_PORT": str(free_port()),
        }
        self.log = data_dir.parent / f"{app_id}.worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def standin(
        cls,
        settings: Settings,
        prefix: str,
        data_dir: Path,
        guarantee: str,
        tick_interval: float = 0.0,
    ) -> Worker:
        workload = ["standin", "--prefix", prefix, "--tick-interval", str(tick_interval)]
        return cls(settings, prefix, data_dir, guarantee, workload)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(60)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, str]:
    """Status and body of a GET on one of our own loopback ports; 4xx/5xx included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def page(worker: Worker, path: str) -> tuple[int, str]:
    """A page of the worker's web server: /healthz, /readyz, /metrics."""
    return http_get(f"http://127.0.0.1:{worker.env['PASSERELLE_WEB_PORT']}{path}")


def metrics_page(worker: Worker) -> str:
    """The worker's /metrics page."""
    status, text = page(worker, "/metrics")
    if status != 200:
        raise PasserelleError(f"worker /metrics answered {status}")
    return text


def metric_sum(text: str, metric: str) -> float:
    """The sum of one metric's samples on a /metrics page."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{metric}{{", f"{metric} "))
    )


def scraped(worker: Worker, metric: str) -> float:
    """The sum of one metric's samples on the worker's /metrics page."""
    return metric_sum(metrics_page(worker), metric)


async def until_ready(worker: Worker, timeout_s: float = 120) -> float:
    """Seconds until the worker's /readyz answers 200 (assigned, restored, caught up);
    PasserelleError if it exits or is not ready in time."""
    started = time.monotonic()
    while True:
        if not worker.alive():
            raise PasserelleError(f"the worker exited; see {worker.log}")
        try:
            if page(worker, "/readyz")[0] == 200:
                return time.monotonic() - started
        except OSError:  # its web server is not up yet
            pass
        if time.monotonic() - started > timeout_s:
            raise PasserelleError(f"the worker was not ready in {timeout_s}s; see {worker.log}")
        await asyncio.sleep(0.05)
