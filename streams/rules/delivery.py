"""Delivery: what a delivery worker decides about one notification, apart from any I/O.

The reference worker (`passerelle deliver`, `streams.tools.deliver`) reads
`messenger.notifications.v1` and calls the Messenger Send API. Its rules:

- **Before sending** (`before_send`): a notification already delivered is not
  sent again (the Send API has no idempotency key); one whose consent has
  ended (a CONSENT_ENDED for that `consent_id` was read, whatever came first
  in the queue) is dropped, the CONSENT_ENDED itself excepted; one past its
  `expires_at` is dropped.
- **The request** (`send_request`): the envelope maps to the Send API's fields
  exactly: `messaging_type`, `tag`, `notification_type` SILENT_PUSH inside
  quiet hours (never dropped), the text, and quick replies as text replies.
- **The answer** (`classify`): the documented answers of the Send API
  (`SEND_API_VERSION`) are done (delivered, or refused for good: the
  recipient blocked the Page, does not exist, is unavailable, or the window
  is closed), throttled (rate limits: that Page backs off), stop the Page
  (its token is refused), or retried (5xx, the API's temporary failures, an
  unknown error; a timeout is retried too). After `MAX_TRIES` tries, a
  notification is dead-lettered: the worker never stops on one record.
- **Backing off** (`backoff`): capped exponential, with jitter.
- **Pacing a Page** (`PageBudget`): a token bucket under the Page's rate
  limit, which halves on a rate-limit answer and pauses that Page only.

A recipient who blocked the Page or does not exist (`UNREACHABLE_OUTCOMES`)
is reported on `messenger.feedback.v1`; the pipeline then mutes that consent.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Literal

from streams.model import DeliveryOutcome, DeliveryReport, Notification

SEND_API_VERSION = "v21.0"
"""The Graph API version whose Send API the worker and its tests speak."""

UNREACHABLE_OUTCOMES: frozenset[str] = frozenset({"BLOCKED", "INVALID_RECIPIENT"})
"""Outcomes that mute the consent the notification was sent under (`UNREACHABLE`)."""

MAX_TRIES = 5
"""Tries of one notification (the first included) before it is dead-lettered."""
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 30.0
THROTTLE_PAUSE_S = 0.5
"""How long a Page rests after its first rate-limit answer; each further one in a row
doubles it, up to `BACKOFF_CAP_S`. Rate limits never use up a notification's tries:
they say the Page must slow down, not that the notification is wrong."""

# The Send API's error codes and subcodes that the worker tells apart (the rest retry).
TOKEN_CODES = frozenset({190})  # invalid OAuth access token
RATE_CODES = frozenset({4, 32, 613})  # application, page and call rate limits
TEMPORARY_CODES = frozenset({1, 2, 1200})  # unknown, unexpected, temporary send failure
REFUSALS: dict[tuple[int, int | None], DeliveryOutcome] = {
    (100, 2018001): "INVALID_RECIPIENT",  # no matching user found
    (10, 2018108): "BLOCKED",  # this person isn't receiving messages from you right now
    (551, None): "UNAVAILABLE",  # this person isn't available right now (any subcode)
    (10, 2018065): "OUTSIDE_WINDOW",  # sent outside of the allowed window
    (10, 2018278): "OUTSIDE_WINDOW",  # outside of the allowed window (message tags)
}

Skip = DeliveryOutcome | Literal["DUPLICATE"]


def before_send(
    notification: Notification, now_ms: int, ended: Container[str], delivered: Container[str]
) -> Skip | None:
    """Why this notification must not be sent now, or None: send it."""
    if notification["notification_id"] in delivered:
        return "DUPLICATE"
    if notification["kind"] != "CONSENT_ENDED" and notification["consent_id"] in ended:
        return "CONSENT_ENDED"
    if now_ms >= notification["expires_at"]:
        return "EXPIRED"
    return None


def send_request(notification: Notification) -> dict[str, Any]:
    """The Send API request body for a notification (POST /{page_id}/messages)."""
    envelope = notification["envelope"]
    message: dict[str, Any] = {"text": notification["text"]}
    replies = notification.get("quick_replies")
    if replies:
        message["quick_replies"] = [
            {"content_type": "text", "title": r["title"], "payload": r["payload"]} for r in replies
        ]
    body: dict[str, Any] = {
        "recipient": {"id": notification["psid"]},
        "messaging_type": envelope["messaging_type"],
        "notification_type": "SILENT_PUSH" if envelope["silent"] else "REGULAR",
        "message": message,
    }
    if envelope["tag"] is not None:
        body["tag"] = envelope["tag"]
    return body


Action = Literal["done", "retry", "throttle", "stop_page"]


@dataclass(frozen=True)
class Answer:
    """What one Send API answer means for the notification and its Page."""

    action: Action
    outcome: DeliveryOutcome | None = None
    """For `done`: the outcome to report."""
    message_id: str | None = None
    code: int | None = None
    subcode: int | None = None
    timed_out: bool = False
    """No answer in time (or no connection): retried like a server error."""


TIMED_OUT = Answer("retry", timed_out=True)


def classify(status: int, body: Any) -> Answer:
    """The meaning of an HTTP answer of the Send API (its JSON body, or None)."""
    if 200 <= status < 300 and isinstance(body, dict) and body.get("message_id"):
        return Answer("done", "DELIVERED", message_id=str(body["message_id"]))
    error = body.get("error") if isinstance(body, dict) else None
    code = _int(error.get("code")) if isinstance(error, dict) else None
    subcode = _int(error.get("error_subcode")) if isinstance(error, dict) else None
    if code in TOKEN_CODES or status == 401:
        return Answer("stop_page", "PAGE_STOPPED", code=code, subcode=subcode)
    if code in RATE_CODES or status == 429:
        return Answer("throttle", code=code, subcode=subcode)
    refused = REFUSALS.get((code, subcode)) if code is not None else None
    if refused is None and code is not None:
        refused = REFUSALS.get((code, None))
    if refused is not None:
        return Answer("done", refused, code=code, subcode=subcode)
    return Answer("retry", code=code, subcode=subcode)  # 5xx, temporary, or unknown


def report(
    notification: Notification, outcome: DeliveryOutcome, answer: Answer | None, at_ms: int
) -> DeliveryReport:
    """What becomes of a notification, for `messenger.feedback.v1`: ids, the outcome,
    the API's message id or error codes; never its text."""
    return {
        "notification_id": notification["notification_id"],
        "consent_id": notification["consent_id"],
        "bank_id": notification["bank_id"],
        "page_id": notification["page_id"],
        "kind": notification["kind"],
        "outcome": outcome,
        "message_id": answer.message_id if answer is not None else None,
        "error_code": answer.code if answer is not None else None,
        "error_subcode": answer.subcode if answer is not None else None,
        "at": at_ms,
    }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def backoff(attempt: int, jitter: float) -> float:
    """Seconds to wait before try `attempt + 1` (attempt ≥ 1): doubling from
    `BACKOFF_BASE_S`, capped at `BACKOFF_CAP_S`, scaled by `jitter` in [0, 1) to
    between half and all of it, so retries of many notifications spread out."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + jitter / 2)


@dataclass
class PageBudget:
    """A Page's pace: `rate` calls a second at most (bursts of one second's worth), and
    a pause after a rate-limit answer. The API's limit is not known in advance, so the
    pace adapts: a rate-limit answer halves the rate and pauses the Page (longer each
    time in a row), each answer that is not one raises it again by one call a second,
    up to `ceiling`. Answers to calls made before a pause began do not count again.
    Times are seconds on the caller's monotonic clock."""

    ceiling: float
    rate: float = 0.0
    tokens: float = 0.0
    at: float = 0.0
    paused_until: float = 0.0
    strikes: int = 0
    """Pauses in a row (rate-limit answers after a pause, with no other answer between)."""

    def __post_init__(self) -> None:
        self.rate = self.rate or self.ceiling

    def take(self, now: float) -> float:
        """Take one call's token: 0 if it may go now, else how long to wait first
        (nothing is taken then: ask again after waiting)."""
        if now < self.paused_until:
            return self.paused_until - now
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def throttled(self, now: float) -> float:
        """A rate-limit answer: the Page slows down and rests; how long it rests."""
        if now < self.paused_until:  # a call made before the pause: already counted
            return self.paused_until - now
        pause = min(BACKOFF_CAP_S, THROTTLE_PAUSE_S * 2.0**self.strikes)
        self.strikes += 1
        self.rate = max(1.0, self.rate / 2)
        self.paused_until = now + pause
        self.tokens = 0.0
        return pause

    def calm(self) -> None:
        """An answer that was not a rate limit: a little faster, and the next pause
        starts from the shortest."""
        self.strikes = 0
        self.rate = min(self.ceiling, self.rate + 1)
