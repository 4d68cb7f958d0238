"""Accounts: the per-account stream in, notifications and audit out.

One record at a time, in the account's order: a consent change updates what
the account holds (and, when it ends a consent, erases the account's state,
writes an ErasureReceipt and tells the customer); a transaction is gated,
folded into the summary and turned into notifications; a tick expires
consents and releases digests. The rules are in `streams.rules`; this module
only reads and writes tables and records.

"Now" is the time the record carries (its timestamp, set at ingest, or the
tick's), so a replay decides exactly as the first run did.
"""

from __future__ import annotations

import logging
import time
from itertools import islice

from aiokafka.structs import ConsumerRecord

from streams import catalog, model, stream
from streams.agents import erasure
from streams.agents.answers import Answers, psid_links
from streams.agents.dlq import dead_letter
from streams.agents.records import Records
from streams.agents.sealing import Sealer
from streams.agents.stored import (
    ACCOUNTS_TABLE,
    ASKED_TABLE,
    CONSENTS_TABLE,
    LAST_SCAN,
    META_TABLE,
    SCAN_CURSOR,
    decode_held,
    find_state,
    load_held,
    load_state,
    next_scan,
    save_held,
    save_state,
    scan_by,
)
from streams.codec import Codec
from streams.core.spec import Emit, StageSpec
from streams.core.store import PartitionStore
from streams.crypto import Keyring
from streams.logs import event
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules import accounts, notify
from streams.rules.consent import (
    Change,
    Held,
    apply_update,
    expire,
    gate,
    mark_unreadable,
    muted_reason,
)
from streams.rules.due import next_due
from streams.rules.ingest import PROCESSING_ERROR
from streams.rules.outputs import release

log = logging.getLogger(__name__)

# Ticks arrive every second; expiry and digests need minute precision, and a scan
# reads every account of the partition: at most one scan per minute of tick time, and
# only when an account may be due (`NEXT_SCAN`), or an hour after the last scan began.
SCAN_EVERY_MS = 60_000
SCAN_AT_LEAST_EVERY_MS = 3_600_000
# A scan reads at most this many accounts per tick (a tick a second per partition)
# and goes on at the next: a tick never holds the event loop long (a full scan of a
# million accounts held it past a 10 s health check), and scanning costs at most
# this many account reads a second per partition. A pass over 25 000 accounts of a
# partition takes 25 s, over 250 000 about four minutes: how late an expired
# consent's erasure and CONSENT_ENDED may come (the gate refuses it at once).
SCAN_SLICE = 1_000
OUTPUT_PERMISSIONS: tuple[model.Permission, ...] = ("TRANSACTIONS", "ALERTS", "SUMMARIES")


class Accounts:
    """The accounts stage's handler, with what it needs to encode and name things."""

    def __init__(
        self,
        codec: Codec,
        hasher: KeyedHasher,
        cat: catalog.Catalog,
        metrics: Metrics,
        keyring: Keyring,
    ) -> None:
        """Metrics count as handled: a batch retried after an abort counts again."""
        self.metrics, self.codec, self.hasher, self.catalog = metrics, codec, hasher, cat
        self.changelog = cat.changelog("accounts").name
        self.records = Records(codec, hasher, metrics)
        self.sealer = Sealer(keyring, self.records.account_hash)
        self.answers = Answers(codec, hasher, self.records.notification)

    def spec(self) -> StageSpec:
        return StageSpec(
            "accounts",
            self.handle,
            topics=(self.catalog.account_stream().name,),
            changelog=self.changelog,
            catch_up=(self.catalog.account_stream().name,),
            purge=True,
            on_error=self.dead_letter,
        )

    def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], exc: Exception, store: PartitionStore
    ) -> list[Emit]:
        """A record that made this stage raise: dead-lettered, sealed with its account's
        key, with its bank topic's coordinates (so the bank's counts reconcile); its
        partition goes on. A record that names no account (a tick) keeps no bytes."""
        self.metrics.child(self.metrics.dlq, stream.bank_of(record.key), PROCESSING_ERROR).inc()
        detail = f"{type(exc).__name__} in the accounts stage"
        if stream.bank_of(record.key) == "unknown":
            return [dead_letter(record, PROCESSING_ERROR, detail, carried=True, kept=False)]
        dead = stream.Dead(PROCESSING_ERROR, detail)
        return [self.sealer.dead_letter(store, record.key or b"", record, dead, record.timestamp)]

    def handle(self, record: ConsumerRecord[bytes, bytes], store: PartitionStore) -> list[Emit]:
        """One record of the per-account stream, in the account's order."""
        read = stream.read(record)
        now = record.timestamp
        match read:
            case stream.Tick(now=tick):
                self.metrics.tick_time.set(tick / 1000)
                return self.tick(store, tick)
            case stream.ConsentFrame(key=key, frame=frame):
                return self.consent(key, frame, store, now)
            case stream.UnreadableConsent(key=key, dead=dead):
                marked = mark_unreadable(load_held(store, key))
                emits = self.consent_changed(key, store, marked, now)
                if dead is not None:  # its dead letter, sealed (before KIND_DEAD: ingest's)
                    emits.append(self.sealer.dead_letter(store, key, record, dead, now))
                return emits
            case stream.DeadRecord(key=key, dead=dead):
                return [self.sealer.dead_letter(store, key, record, dead, now)]
            case stream.TransactionFrame():
                return self.transaction(read, store, now)
            case stream.Request(key=key, asked=asked):
                return self.answers.handle(key, asked, store, now)
            case stream.Unreachable(key=key, consent_id=consent_id):
                return self.answers.unreachable(key, consent_id, store)
        raise AssertionError(f"not a per-account stream record: {type(read).__name__}")

    # -- consents ------------------------------------------------------------

    def consent(
        self, key: bytes, frame: bytes | None, store: PartitionStore, now: int
    ) -> list[Emit]:
        update = None if frame is None else self.codec.decode(model.CONSENT, frame)
        change = apply_update(load_held(store, key), update)  # type: ignore[arg-type]  # decoded Consent
        return self.consent_changed(key, store, change, now)

    def consent_changed(
        self, key: bytes, store: PartitionStore, change: Change, now: int
    ) -> list[Emit]:
        """Keep the new consent state; on an end, erase, tell and leave a receipt."""
        if change.outcome == "ignored":
            return []
        held, links = psid_links(self.catalog.psid_stream().name, key, change)
        save_held(store, key, held)
        if held == Held():  # the authority forgot the account: its dead letters go too
            self.sealer.shred(store, key)
        ended, marker = change.ended_consent, change.marker
        if change.outcome != "ended" or ended is None or marker is None:
            return links
        store.delete(ACCOUNTS_TABLE, key)
        store.delete(ASKED_TABLE, key)
        self.sealer.shred(store, key)  # and so its dead letters
        self.metrics.erasures.labels(bank=ended["bank_id"], reason=marker.reason).inc()
        receipt = erasure.receipt(self.catalog, self.hasher, ended, marker, now)
        log.info(
            "erased account %s of %s: consent ended (%s)",
            receipt["account_hash"],
            ended["bank_id"],
            marker.reason,
            extra=event(
                "erasure",
                bank=ended["bank_id"],
                account_hash=receipt["account_hash"],
                reason=marker.reason,
            ),
        )
        emits = [*links, self.records.audit(ended, receipt, model.ERASURE_RECEIPT)]
        if marker.reason != "TOMBSTONE":  # a tombstone leaves nobody to tell
            granted = release("CONSENT_ENDED", Held(ended), now)
            emits += self.records.notification(
                key, notify.for_consent_ended(granted, marker.version, now)
            )
        return emits

    # -- transactions --------------------------------------------------------

    def transaction(
        self, read: stream.TransactionFrame, store: PartitionStore, now: int
    ) -> list[Emit]:
        tx: model.Transaction = self.codec.decode(model.TRANSACTION, read.frame)  # type: ignore[assignment]  # decoded Transaction
        key, source = read.key, read.source
        held = load_held(store, key)
        verdict = gate(held, tx, now, "TRANSACTIONS")
        consent = held.consent
        if consent is None or not (
            verdict.forwarded or (verdict.reason == "PERMISSION" and _uses(consent))
        ):  # no output of this transaction could be permitted: the TRANSACTIONS reason
            return [self.records.decision(tx, source, held, "WITHHELD", verdict.reason, now)]
        state = load_state(store, key)
        effect = accounts.apply(state, tx, consent, now)
        if effect.duplicate:
            return [self.records.decision(tx, source, held, "WITHHELD", "DUPLICATE", now)]
        save_state(store, key, state)
        reason: model.WithheldReason | None = "STALE" if effect.stale else muted_reason(held)
        if reason is not None:  # stale, or muted: counted; the customer hears nothing
            return [self.records.decision(tx, source, held, "WITHHELD", reason, now)]
        kinds: list[model.NotificationKind] = []
        kinds += ["TRANSACTION"] if effect.notify else []
        kinds += ["LARGE_TRANSACTION"] if effect.large else []
        kinds += ["LOW_BALANCE"] if effect.low_balance else []
        sent: list[model.Notification] = []
        for kind in kinds:  # each through the gate, with the consent held now
            granted = release(kind, held, now, tx["booked_at"])
            if granted.allowed:
                sent.append(notify.for_transaction(kind, granted, tx, now))
        if sent:
            latency = max(0.0, time.time() - now / 1000)
            self.metrics.child(self.metrics.latency, "ingest").observe(latency)
        decision = self.records.decision(tx, source, held, "FORWARDED", None, now, tuple(sent))
        return [decision, *(self.records.message(n) for n in sent)]

    # -- time ----------------------------------------------------------------

    def tick(self, store: PartitionStore, now: int) -> list[Emit]:
        """Expire consents past valid_until; release digests of ended local days.

        Once per minute of tick time, a scan of the partition's accounts starts if
        one may be due (`NEXT_SCAN`: the earliest `next_due` of the accounts the last
        scan read, lowered by every write since), or if the last began an hour ago.
        It reads SCAN_SLICE accounts per tick, in key order, until it has read them
        all. Where it is (the minute, the next due, the last key read) is kept in the
        store, and so in the changelog: a replay scans exactly where the first run did."""
        cursor = store.get(META_TABLE, SCAN_CURSOR)
        if cursor is None:  # no scan under way: once a minute, start one if due
            minute = now // SCAN_EVERY_MS
            last = store.get(META_TABLE, LAST_SCAN)
            if last is not None and int(last) >= minute:
                return []
            store.put(META_TABLE, LAST_SCAN, str(minute).encode())
            self.sealer.sweep(store, now, SCAN_SLICE)
            due = next_scan(store)
            if due is not None and now < due:
                return []
            scan_by(store, now + SCAN_AT_LEAST_EVERY_MS, start=True)
        held_accounts = list(islice(store.items(CONSENTS_TABLE, after=cursor), SCAN_SLICE + 1))
        if len(held_accounts) > SCAN_SLICE:
            del held_accounts[SCAN_SLICE:]
            store.put(META_TABLE, SCAN_CURSOR, held_accounts[-1][0])
        elif cursor is not None:  # the scan under way is done
            store.delete(META_TABLE, SCAN_CURSOR)
        emits: list[Emit] = []
        for key, raw in held_accounts:
            try:
                emits += self.scan(store, key, decode_held(raw), now)
            except Exception as exc:  # one account must not stop every scan of its partition
                scan_by(store, now)  # read again by the next minute's scan
                self.metrics.child(self.metrics.dlq, stream.bank_of(key), PROCESSING_ERROR).inc()
                log.warning(
                    "scan failed on an account of %s: %s; dead-lettered, the scan goes on",
                    stream.bank_of(key),
                    type(exc).__name__,
                    extra=event("processing_error", bank=stream.bank_of(key), reason="scan"),
                )
                detail = f"{type(exc).__name__} in the accounts stage's scan"
                headers = (("reason", PROCESSING_ERROR.encode()), ("error", detail.encode()))
                emits.append(Emit(catalog.DLQ, key, None, headers=headers))
        return emits

    def scan(self, store: PartitionStore, key: bytes, held: Held, now: int) -> list[Emit]:
        """One account's time-driven work: its consent's expiry, its due digests.

        A day's digest is taken out of the state when its day has ended, whether
        or not the gate lets it go: a digest withheld now (the consent suspended,
        SUMMARIES withdrawn, the account unreadable) is never sent later."""
        change = expire(held, now)
        if change.outcome == "ignored" and held.consent is not None and not held.linked:
            change = Change(held, "updated")  # held from before the conversation: link it
        emits = self.consent_changed(key, store, change, now)
        held = change.held if change.outcome != "ignored" else held
        consent, state = held.consent, find_state(store, key)
        if consent is not None and state is not None:
            days = len(state["days"])
            due = accounts.due_digests(state, consent, now)
            if len(state["days"]) != days:  # an ended day was released: only then a write
                save_state(store, key, state)
            for digest in due:
                granted = release("DAILY_DIGEST", held, now)
                if granted.allowed:
                    currency = state["currency"] or "EUR"
                    digested = notify.for_digest(granted, digest, currency, now, now)
                    emits += self.records.notification(key, digested)
        # An account still due (a local day a DST change repeats) is read again by the
        # next minute's scan, as every account once was.
        scan_by(store, next_due(held, state))
        return emits


def _uses(consent: model.Consent) -> bool:
    """Whether the consent permits any output a transaction can have."""
    return any(p in consent["permissions"] for p in OUTPUT_PERMISSIONS)
