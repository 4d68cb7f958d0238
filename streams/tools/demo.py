"""`make run`: the pipeline on a simulated bank feed, notifications streaming to the terminal.

Starts a worker (`passerelle worker pipeline`) as a subprocess, and the
delivery side (`streams.tools.demodelivery`: a local Send API on which one
customer of this run has blocked the Page, and `passerelle deliver`); waits
until they are ready, tails the delivery topic while the simulator sends
about a minute of bank events, then reconciles every bank (this run's records
only) and says what the delivery worker reported: the blocked customer once
BLOCKED, after which the pipeline withholds their notifications
(UNREACHABLE). Three customers then talk to the Page (`DIALOGUE`: a balance,
the last transactions, this month, a STOP, a question after it), as
`passerelle ask` does, and everything stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streams.catalog import Catalog, outcomes_topic_name
from streams.codec import Codec
from streams.errors import PasserelleError
from streams.settings import Settings
from streams.tools import ask, consent, demodelivery, reconcile, simulate, tail

Say = Callable[[str], None]
READY_TIMEOUT_S = 120
RECONCILE_TIMEOUT_S = 120
# Who says what, in order: customers 0, 1 and 2 of those the feed gave a valid consent.
DIALOGUE = [
    (0, "solde ?"),
    (1, "dernières opérations"),
    (2, "ce mois"),
    (2, "STOP"),
    (2, "solde"),
    (0, "aide"),
]


async def run(
    settings: Settings, codec: Codec, seconds: float, rate: float, log_path: Path, say: Say = print
) -> bool:
    """The demo; True when every bank reconciles."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    seed = random.SystemRandom().randrange(10**6)
    now = int(time.time() * 1000)
    population = simulate.draw(random.Random(seed), simulate.PER_BANK, simulate.BANKS, now)
    blocked = next(a.psid for a in population if a.consent is not None)
    delivery = demodelivery.start(log_path.parent / "demo", blocked, seed, log_path)
    with log_path.open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "pipeline"],
            stdout=log,
            stderr=log,
            env=dict(os.environ),
        )
    say(f"worker, delivery worker and local Send API started (log {log_path})")
    try:
        await _wait_ready(f"http://127.0.0.1:{settings.web_port}/readyz", worker)
        await _wait_ready(delivery.readyz, delivery.deliverer)
        # Count this run only: a reused broker keeps earlier runs' records.
        since = await reconcile.marks(settings, [bank.bank_id for bank in simulate.BANKS])
        say("worker ready; simulating banks — notifications as the messaging team sees them:")
        stop = asyncio.Event()
        tailing = asyncio.create_task(tail.tail(settings, codec, say=say, stop=stop))
        events = int(seconds * rate)
        started = int(time.time() * 1000)
        stream = Catalog(settings).account_stream().name

        async def consents_in(keys: set[bytes]) -> None:
            await simulate.until_in_stream(settings, stream, keys)

        feed = await simulate.run(
            settings, codec, events, rate, seed=seed, say=say, after_consents=consents_in
        )
        counts = await reconcile.wait_balanced(
            settings, codec, list(feed.sent), RECONCILE_TIMEOUT_S, since
        )
        await asyncio.sleep(2)  # let the last notifications print
        stop.set()
        shown = await tailing
        say("")
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(feed.kinds.items()))
        say(f"sent: {sum(feed.sent.values())} bank events ({kinds})")
        say(f"notifications delivered to the Messenger topic: {shown}")
        for bank, c in sorted(counts.items()):
            say("reconciliation " + c.line(bank))
        fed = await reconcile.wait_balanced(settings, codec, list(feed.sent), 30, since, feed=True)
        for bank, c in sorted(fed.items()):  # what a bank reads with its own credentials
            say(f"its own feed, {outcomes_topic_name(bank)}: " + c.line(bank))
        delivered = await reconcile.deliveries(settings, codec, list(feed.sent), started)
        for bank, outcomes in sorted(delivered.items()):
            say(reconcile.delivery_line(bank, outcomes) + " (what the local Send API answered)")
        say(
            f"customer …{blocked[-4:]} has blocked the Page: reported BLOCKED, and since then "
            "withheld as UNREACHABLE (the reconciliation's withheld reasons)"
        )
        await converse(settings, codec, list(feed.sent), started, say)
        return all(c.balanced for c in counts.values())
    finally:
        delivery.stop()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()


async def _wait_ready(url: str, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise PasserelleError(f"pid {worker.pid} exited with {worker.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # our own loopback port
                if json.load(response).get("ready"):
                    return
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise PasserelleError(f"the worker was not ready within {READY_TIMEOUT_S}s")


async def converse(
    settings: Settings, codec: Codec, banks: list[str], since_ms: int, say: Say
) -> None:
    """Three customers whose consent this run granted talk to the Page; each answer is
    printed."""
    held = await consent.newest(settings, codec, tuple(f"{b}:".encode() for b in banks))
    now = time.time() * 1000
    talking = [
        c
        for c in held.values()
        if c and c["status"] == "VALID" and c["valid_until"] > now and c["updated_at"] >= since_ms
    ][:3]
    if len(talking) < 3:
        say("fewer than three customers with a valid consent: no conversation shown")
        return
    say("")
    say("customers talk to the Page (as `passerelle ask` does):")
    for who, text in DIALOGUE:
        customer = talking[who]
        say(f"customer …{customer['psid'][-4:]} says « {text} »")
        said = ask.message(customer["psid"], customer["page_id"], text, None)
        await ask.ask(settings, codec, said, wait_s=30, say=lambda line: say("    " + line))
