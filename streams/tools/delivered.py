"""What the delivery worker keeps: its journal, the Pages' tokens, the offsets it may commit.

The Send API has no idempotency key, so the worker keeps its own record of what
it sent, in an append-only journal under its state folder (owner-only):

- `S <id>`: a call for this notification is about to be made (in flight);
- `D <id> <ms> <outcome> <message_id or ->`: its outcome is known (delivered or
  not), and its report written; a notification read again (a restart before
  the commit) is not sent again, but its report is (the first one may have
  been lost with the process: reports are at least once);
- `E <consent_id> <ms>`: a CONSENT_ENDED for that consent was read (the barrier).

Each line is written and flushed to the OS before the call it announces, so a
killed worker (kill -9) loses none; `sync` (fsync) runs before every offset
commit. At start the journal is read back: a notification marked `S` without
`D` was in flight when the worker stopped and may or may not have reached the
customer: it is counted (`uncertain`) and sent again if it is read again (at
least once: a duplicate message is better than a lost one, and the count says
how many there may be). Entries older than `KEEP_MS` are forgotten when the
journal is rewritten (past that, a notification has expired: none is
delivered more than 7 days after it was written), and the journal keeps at
most `MAX_ENTRIES` delivered ids.

`PageTokens` reads each Page's access token from its own file, and stops a
Page whose token the API refused until that file changes.

`Offsets` tracks, per partition, which records are done, so that the offset
committed is always that of the oldest record not yet done: records of one
partition finish out of order (customers are served concurrently), but a
record is never committed before it is done.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from pathlib import Path

from streams.metrics import DeliveryMetrics

log = logging.getLogger(__name__)

PAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEEP_MS = 8 * 86_400_000
MAX_ENTRIES = 500_000
JOURNAL = "journal"
Done = tuple[int, str, str]
"""When a notification was done, its outcome, and the API's message id (or "-")."""


class Journal:
    """The delivered ids and ended consents of one worker, kept on disk."""

    def __init__(self, folder: Path, now_ms: int) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = folder / JOURNAL
        self.delivered: dict[str, Done] = {}
        self.ended: dict[str, int] = {}
        in_flight: set[str] = set()
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                mark, name, at, *outcome = [*line.split(" "), "", ""][:5]
                if mark == "S":
                    in_flight.add(name)
                elif mark == "D" and at.isdigit():
                    self.delivered[name] = (int(at), outcome[0], outcome[1])
                    in_flight.discard(name)
                elif mark == "E" and at.isdigit():
                    self.ended[name] = int(at)
        self.uncertain = len(in_flight)
        """Calls in flight when the worker last stopped: each may have reached the customer."""
        self._rewrite(now_ms)

    def _rewrite(self, now_ms: int) -> None:
        """Keep what still matters (recent, bounded), in a new file swapped in whole."""
        cutoff = now_ms - KEEP_MS
        newest = sorted(self.delivered.items(), key=lambda item: item[1][0])[-MAX_ENTRIES:]
        self.delivered = {name: done for name, done in newest if done[0] >= cutoff}
        self.ended = {name: at for name, at in self.ended.items() if at >= cutoff}
        fresh = self.path.with_suffix(".new")
        with open(os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.writelines(
                f"D {name} {' '.join(map(str, d))}\n" for name, d in self.delivered.items()
            )
            out.writelines(f"E {name} {at}\n" for name, at in self.ended.items())
            out.flush()
            os.fsync(out.fileno())
        fresh.replace(self.path)
        self._file = open(os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600), "a")  # noqa: SIM115  # kept open
        self._lines = 0

    def _write(self, line: str) -> None:
        self._file.write(line)
        self._file.flush()  # in the OS: a killed process loses nothing
        self._lines += 1

    def sending(self, notification_id: str) -> None:
        self._write(f"S {notification_id}\n")

    def done(self, notification_id: str, at_ms: int, outcome: str, message_id: str | None) -> None:
        self.delivered[notification_id] = (at_ms, outcome, message_id or "-")
        self._write(f"D {notification_id} {at_ms} {outcome} {message_id or '-'}\n")

    def end(self, consent_id: str, at_ms: int) -> None:
        if consent_id not in self.ended:
            self.ended[consent_id] = at_ms
            self._write(f"E {consent_id} {at_ms}\n")

    def sync(self, now_ms: int) -> None:
        """Make what was written durable (before offsets are committed); rewrite the
        journal once it has grown past its bound."""
        os.fsync(self._file.fileno())
        if self._lines > MAX_ENTRIES:
            self._file.close()
            self._rewrite(now_ms)

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class Offsets:
    """Per partition, the records read and not yet done, in offset order."""

    def __init__(self) -> None:
        self._pending: dict[object, deque[list[int]]] = {}
        self._next: dict[object, int] = {}

    def read(self, partition: object, offset: int) -> list[int]:
        """A record was read: its slot, to pass to `done`."""
        slot = [offset, 0]
        self._pending.setdefault(partition, deque()).append(slot)
        self._next[partition] = offset + 1
        return slot

    @staticmethod
    def done(slot: list[int]) -> None:
        slot[1] = 1

    def committable(self) -> dict[object, int]:
        """For each partition, the offset to commit: the oldest record not done yet,
        or past the last one read."""
        offsets = {}
        for partition, pending in self._pending.items():
            while pending and pending[0][1]:
                pending.popleft()
            offsets[partition] = pending[0][0] if pending else self._next[partition]
        return offsets

    def forget(self, partitions: object) -> None:
        """Partitions revoked: nothing of theirs is tracked any more."""
        for partition in list(self._pending):
            if partition in partitions:  # type: ignore[operator]  # a set of TopicPartitions
                del self._pending[partition]
                self._next.pop(partition, None)


class PageTokens:
    """Each Page's access token, from its own file, looked at again at most once every
    `RECHECK_S` (not on every notification); a refused one stops the Page until the file
    changes."""

    RECHECK_S = 1.0

    def __init__(self, folder: Path, metrics: DeliveryMetrics) -> None:
        self.folder = folder
        self.metrics = metrics
        self.stopped: dict[str, float] = {}  # page → the file's mtime when refused
        self._known: dict[str, tuple[float, float, str | None]] = {}  # checked, mtime, token

    def get(self, page: str, now: float) -> str | None:
        """The Page's usable token at `now` (monotonic seconds), or None."""
        checked, mtime, token = self._known.get(page, (-self.RECHECK_S, -1.0, None))
        if now - checked >= self.RECHECK_S:
            mtime, token = self._read(page)
            self._known[page] = (now, mtime, token)
        if self.stopped.get(page, -2.0) == mtime:
            return None
        if page in self.stopped:  # a new token: try again
            del self.stopped[page]
            self.metrics.child(self.metrics.page_stopped, page).set(0)
        return token

    def _read(self, page: str) -> tuple[float, str | None]:
        path = self.folder / page
        if not PAGE_ID.match(page) or not path.is_file():
            return -1.0, None
        return path.stat().st_mtime, path.read_text().strip() or None

    def refused(self, page: str) -> None:
        self.stopped[page] = self._read(page)[0]
        self._known.pop(page, None)
        self.metrics.child(self.metrics.page_stopped, page).set(1)
        log.error("page %s: access token refused; its notifications are dead-lettered", page)
