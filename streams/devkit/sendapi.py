"""A local Messenger Send API, for the tests, the bench and `make run`; never Meta's.

It answers `POST /{version}/{page_id}/messages` as the Send API does, as far as
Passerelle uses it (`streams.rules.delivery.SEND_API_VERSION`):

- the request body is validated against `tests/contracts/send-api.schema.json`
  (a body that fails is refused with code 100 and kept in `invalid`, so a test
  can say none was);
- the Page's access token must be the one it was given (else code 190);
- success: `{"recipient_id", "message_id"}`, and the message is kept in `sent`.

Switches make it answer as the real API does when things go wrong:

| switch | answer |
|---|---|
| `blocked` psids | 400, code 10 subcode 2018108 (not receiving messages from the Page) |
| `invalid` psids | 400, code 100 subcode 2018001 (no matching user found) |
| `unavailable` psids | 400, code 551 subcode 1545041 (this person isn't available) |
| `outside_window` psids | 400, code 10 subcode 2018278 (outside of the allowed window) |
| `poison` psids | 500, code 1200 (temporary send failure), every time |
| `page_rate` {page: calls/s} | 400, code 613 past that rate (calls exceeded the rate limit) |
| `errors` {page: n} | the next n calls of the Page: 500, code 1200 |
| `latency_ms` {page or "*": ms} | answers that much later |
| `hang` pages | never answers (the caller's timeout) |

`python -m streams.devkit.sendapi --port P --tokens DIR [--blocked PSID …] [--latency-ms L]`
serves it on 127.0.0.1 (what `make run` starts); tests use `SendApi` in process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web

from streams.rules.delivery import SEND_API_VERSION

SCHEMA = Path(__file__).resolve().parents[2] / "tests" / "contracts" / "send-api.schema.json"

_REFUSALS = {
    "blocked": (10, 2018108, "This person isn't receiving messages from you right now."),
    "invalid": (100, 2018001, "No matching user found"),
    "unavailable": (551, 1545041, "This person isn't available right now."),
    "outside_window": (10, 2018278, "This message is sent outside of allowed window."),
}


def error(status: int, code: int, subcode: int | None, message: str) -> web.Response:
    body: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        body["error_subcode"] = subcode
    body["fbtrace_id"] = uuid.uuid4().hex[:11]
    return web.json_response({"error": body}, status=status)


@dataclass
class SendApi:
    """The local API's pages, switches, and what it was sent."""

    tokens: dict[str, str]
    blocked: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    unavailable: set[str] = field(default_factory=set)
    outside_window: set[str] = field(default_factory=set)
    poison: set[str] = field(default_factory=set)
    page_rate: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, int] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    """Each message accepted: page, body, message_id, at (seconds)."""
    invalid_bodies: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    _windows: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))

    async def messages(self, request: web.Request) -> web.Response:
        page = request.match_info["page"]
        self.calls[page] = self.calls.get(page, 0) + 1
        if page in self.hang:
            await asyncio.sleep(3600)
        delay = self.latency_ms.get(page, self.latency_ms.get("*", 0))
        if delay:
            await asyncio.sleep(delay / 1000)
        if request.match_info["version"] != SEND_API_VERSION:
            return error(400, 2500, None, f"Unknown path components: {request.path}")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if page not in self.tokens or token != self.tokens[page]:
            return error(400, 190, None, "Invalid OAuth access token.")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return error(400, 100, None, "Invalid parameter: the body is not JSON")
        problems = sorted(e.message for e in self.validator.iter_errors(body))
        if problems:
            self.invalid_bodies.append("; ".join(problems))
            return error(400, 100, None, f"Invalid parameter: {problems[0]}")
        if self._over_rate(page):
            return error(400, 613, None, "Calls to this api have exceeded the rate limit.")
        if self.errors.get(page, 0) > 0:
            self.errors[page] -= 1
            return error(500, 1200, None, "Temporary send message failure. Please try again later.")
        psid = body["recipient"]["id"]
        if psid in self.poison:
            return error(500, 1200, None, "Temporary send message failure. Please try again later.")
        for switch, (code, subcode, message) in _REFUSALS.items():
            if psid in getattr(self, switch):
                return error(400, code, subcode, message)
        message_id = f"m_{uuid.uuid4().hex}"
        self.sent.append({"page": page, "body": body, "message_id": message_id, "at": time.time()})
        return web.json_response({"recipient_id": psid, "message_id": message_id})

    def _over_rate(self, page: str) -> bool:
        """Whether this call goes past the Page's rate (calls in the last second)."""
        rate = self.page_rate.get(page)
        if rate is None:
            return False
        now = time.monotonic()
        window = [t for t in self._windows.get(page, []) if now - t < 1.0]
        over = len(window) >= rate
        if not over:
            window.append(now)
        self._windows[page] = window
        return over

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version}/{page}/messages", self.messages)
        return app

    async def serve(self, port: int = 0) -> tuple[web.AppRunner, int]:
        """Serve on 127.0.0.1 (port 0: any free one); the runner, to clean up, and the port."""
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        server: Any = site._server  # aiohttp keeps the asyncio server it started
        return runner, server.sockets[0].getsockname()[1]


def tokens_from(folder: Path) -> dict[str, str]:
    """The Pages and tokens of a token folder (one file per page_id)."""
    return {p.name: p.read_text().strip() for p in folder.iterdir() if p.is_file()}


async def _main(args: argparse.Namespace) -> None:
    api = SendApi(tokens_from(args.tokens), blocked=set(args.blocked))
    if args.latency_ms:
        api.latency_ms["*"] = args.latency_ms
    runner, port = await api.serve(args.port)
    print(f"local Send API on http://127.0.0.1:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a local Messenger Send API")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--tokens", type=Path, required=True, help="one file per page_id")
    parser.add_argument("--blocked", nargs="*", default=[], help="psids who blocked the Page")
    parser.add_argument("--latency-ms", type=int, default=0, help="answer this much later")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
