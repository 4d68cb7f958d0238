"""No account number, psid or amount in any log line or in /metrics.

Planted, recognisable values go through the real tools and a real worker (consents
granted and revoked with `passerelle consent`, transactions sent with `passerelle
produce`, alerts and an erasure on the way); then every line every process wrote
and the whole /metrics page are scanned for them, in every form the renderer gives
an amount. The scan is proven able to find them: it finds the planted amounts in
the notifications' own texts, and a canary line planted in a copy of the logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from streams import catalog, model
from streams.catalog import Catalog
from streams.codec import Codec
from streams.kafka import read_all
from streams.rules.money import format_money
from streams.settings import Settings
from streams.tools import simulate
from tests.conftest import fresh_app, unique_bank
from tests.integration.harness import Worker, metrics_text, until

LOCALES = ("fr-FR", "en-GB")
# Distinctive amounts (minor units): a debit, a large debit, a credit; balances after.
AMOUNTS = (-7_654_321, -13_579_135, 24_680_135)
BALANCES = (9_182_736, 5_432_109, -2_468_013)


def amount_forms(minor: int, currency: str) -> set[str]:
    """Every way an amount may be written: rendered in each locale, and raw."""
    forms = {format_money(abs(minor), currency, locale) for locale in LOCALES}
    forms |= {str(abs(minor)), f"{abs(minor) / 100:.2f}", f"{abs(minor) / 100:,.2f}"}
    return forms


def needles(accounts: list[str], psids: list[str], currency: str) -> set[str]:
    found = set(accounts) | set(psids)
    for minor in AMOUNTS + BALANCES:
        found |= amount_forms(minor, currency)
    return found


def occurrences(text: str, wanted: set[str]) -> set[str]:
    """The wanted strings found in text; a number only where it is a whole number."""
    return {w for w in wanted if re.search(rf"(?<![\d.,]){re.escape(w)}(?![\d])", text)}


def cli(env: dict[str, str], *args: str, status: int = 0) -> str:
    """Run `passerelle …`; its stdout and stderr, which the scan reads."""
    done = subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == status, done.stderr
    return done.stdout + done.stderr


async def test_no_planted_account_psid_or_amount_reaches_a_log_or_the_metrics(
    settings: Settings, codec: Codec, tmp_path: Path, workers: list[Worker]
) -> None:
    bank = unique_bank()
    settings = await fresh_app(settings, "pii", [bank])
    app_id = settings.app_id
    cat = Catalog(settings)
    worker = Worker(settings, app_id, tmp_path / "data", "exactly_once", ["pipeline"])
    workers.append(worker)
    worker.start()
    env = {**os.environ, "PASSERELLE_BOOTSTRAP": settings.bootstrap_servers}

    run = uuid.uuid4().hex[:8].upper()
    accounts = [f"FR76{run}{i:06d}" for i in range(3)]
    psids = [str(8_000_000_000_000_000 + int(run, 16) * 10 + i) for i in range(3)]
    outputs: list[str] = []
    for account, psid, locale in zip(accounts, psids, ("fr-FR", "en-GB", "fr-FR"), strict=True):
        outputs.append(
            cli(env, "consent", "grant", "--bank", bank, "--account", account, "--psid", psid,
                "--locale", locale, "--large", "1000000", "--low", "1000000")
        )  # fmt: skip
    keys = {f"{bank}:{a}".encode() for a in accounts}
    await simulate.until_in_stream(settings, cat.account_stream().name, keys)

    now = int(time.time() * 1000)
    lines = []
    for i, (account, amount, balance) in enumerate(zip(accounts, AMOUNTS, BALANCES, strict=True)):
        lines.append(
            json.dumps(
                {
                    "transaction_id": f"pii-{run}-{i}",
                    "bank_id": bank,
                    "account_id": account,
                    "status": "BOOKED",
                    "pending_transaction_id": None,
                    "reversed_transaction_id": None,
                    "amount_minor": amount,
                    "currency": "EUR",
                    "booked_at": now,
                    "merchant_name": "Galeries Canari",
                    "mcc": "5311",
                    "description": None,
                    "balance_after_minor": balance,
                    "channel": "CARD",
                }
            )
        )
    bad = json.loads(lines[0]) | {"currency": "EURO", "transaction_id": f"pii-{run}-bad"}
    lines.append(json.dumps(bad))  # refused by the tool, line by line
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    outputs.append(cli(env, "produce", "--bank", bank, str(feed), status=1))
    assert "1 refused" in outputs[-1]

    async def notified(n: int) -> list[model.Notification]:
        mine: list[model.Notification] = [
            codec.decode(model.NOTIFICATION, r.value)  # type: ignore[misc]  # a decoded Notification
            for r in await read_all(settings, catalog.NOTIFICATIONS)
            if r.key and r.key.decode() in psids and r.value
        ]
        return mine if len(mine) >= n else []

    async def alerts_out() -> bool:
        return bool(await notified(6))  # 3 TRANSACTION, 2 LARGE, 1 LOW_BALANCE at least

    await until(alerts_out, worker, 90)
    outputs.append(cli(env, "consent", "revoke", "--bank", bank, "--account", accounts[0]))

    async def ended() -> bool:
        return any(n["kind"] == "CONSENT_ENDED" for n in await notified(1))

    await until(ended, worker, 90)
    scraped = metrics_text(worker)
    assert worker.stop() == 0

    wanted = needles(accounts, psids, "EUR")
    texts = " ".join(n["text"] for n in await notified(1))
    rendered = occurrences(texts, wanted)
    assert rendered & {format_money(abs(AMOUNTS[0]), "EUR", "fr-FR")}, "the scan finds renderings"
    assert rendered & {format_money(abs(AMOUNTS[1]), "EUR", "en-GB")}
    logs = worker.log.read_text(errors="replace")
    canary = logs + f"\nINFO canary {accounts[1]} {format_money(abs(AMOUNTS[2]), 'EUR', 'fr-FR')}\n"
    assert len(occurrences(canary, wanted)) == 2, "the scan finds a planted canary line"

    scanned = {"worker log": logs, "/metrics": scraped, "tool output": "\n".join(outputs)}
    print({name: len(text.splitlines()) for name, text in scanned.items()}, "lines scanned")
    for name, text in scanned.items():
        leaked = occurrences(text, wanted)
        assert not leaked, f"{name} carries {len(leaked)} planted values"
