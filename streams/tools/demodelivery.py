"""The delivery side of `make run`: a local Send API and `passerelle deliver` in front of it.

The local Send API (`python -m streams.devkit.sendapi`) has one Page per
simulated bank, with a fresh token each (in an owner-only folder), and one
customer who has blocked the Page. `passerelle deliver` reads the
notifications of this run (a new `messenger-demo-…` group starting at the end)
and reports each outcome on `messenger.feedback.v1`; the pipeline mutes the
blocked customer's consent (UNREACHABLE).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from streams.tools import simulate


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Delivery:
    api: subprocess.Popen[bytes]
    deliverer: subprocess.Popen[bytes]
    readyz: str
    blocked: str
    """The psid of the customer who blocked the Page."""

    def stop(self) -> None:
        for process in (self.deliverer, self.api):
            process.send_signal(signal.SIGTERM)
        for process in (self.deliverer, self.api):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def start(folder: Path, blocked: str, seed: int, log: Path) -> Delivery:
    """Start the local Send API and a delivery worker; logs to `log`."""
    tokens = folder / "page-tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    for bank in simulate.BANKS:
        path = tokens / bank.page_id
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    api_port, web_port = free_port(), free_port()
    with log.open("ab") as out:
        local_api = [sys.executable, "-m", "streams.devkit.sendapi", "--port", str(api_port)]
        api = subprocess.Popen(
            [*local_api, "--tokens", str(tokens), "--blocked", blocked], stdout=out, stderr=out
        )
        env = {
            **os.environ,
            "PASSERELLE_GRAPH_URL": f"http://127.0.0.1:{api_port}",
            "PASSERELLE_PAGE_TOKENS_DIR": str(tokens),
            "PASSERELLE_DELIVER_DIR": str(folder / "deliver"),
            "PASSERELLE_DELIVER_PORT": str(web_port),
        }
        command = [sys.executable, "-m", "streams", "deliver", "--start", "latest"]
        deliverer = subprocess.Popen(
            [*command, "--group", f"messenger-demo-{seed}"], stdout=out, stderr=out, env=env
        )
    return Delivery(api, deliverer, f"http://127.0.0.1:{web_port}/readyz", blocked)
