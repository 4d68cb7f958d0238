"""What the accounts stage writes, built in one place: each notification together with
what the audit trail says of it (in one transaction: an access request is answered
from the audit alone), the gate's Decisions and the receipts. A transaction's
notifications are listed in its Decision (`outputs`): no record more for the
commonest notifications; the others (digests, answers, CONSENT_ENDED) each get a
Disclosure.

Every record about an account is keyed on the audit trail by the account's keyed
hash; a Disclosure names the psid it went to by its keyed hash too, and the data
fields it carried by name, never their values."""

from __future__ import annotations

import time
from typing import Any

from streams import catalog, model, stream
from streams.codec import Codec
from streams.core.spec import Emit
from streams.metrics import Metrics
from streams.redact import KeyedHasher
from streams.rules.consent import Held

EVENT_KINDS = frozenset({"TRANSACTION", "LARGE_TRANSACTION", "LOW_BALANCE"})


class Records:
    """Builds the stage's output records, counting them as it goes."""

    def __init__(self, codec: Codec, hasher: KeyedHasher, metrics: Metrics) -> None:
        self.codec, self.hasher, self.metrics = codec, hasher, metrics

    def account_hash(self, key: bytes) -> str:
        """The keyed hash of the account a per-account stream key names."""
        bank_id, account_id = key.decode().split(":", 1)
        return self.hasher.account(bank_id, account_id)

    def message(self, n: model.Notification) -> Emit:
        """A notification that says nothing of an account (the conversation's replies
        to a psid no consent names): no Disclosure."""
        self.metrics.child(self.metrics.notifications, n["kind"]).inc()
        if n["kind"] in EVENT_KINDS:
            self.metrics.child(self.metrics.latency, "event_time").observe(
                max(0.0, time.time() - n["occurred_at"] / 1000)
            )
        return Emit(
            catalog.NOTIFICATIONS, n["psid"].encode(), self.codec.encode(model.NOTIFICATION, n)
        )

    def output(self, n: model.Notification) -> model.Output:
        """What the audit trail says of a notification: its id and kind, the psid's hash,
        the names of the data fields it carried."""
        return {
            "notification_id": n["notification_id"],
            "kind": n["kind"],
            "psid_hash": self.hasher.psid(n["psid"]),
            "fields": [name for name, value in n["data"].items() if value is not None],
        }

    def notification(self, key: bytes, n: model.Notification) -> list[Emit]:
        """The notification for the account `key`, and its Disclosure (a transaction's
        notifications are listed in its Decision instead: `decision`'s `outputs`)."""
        account = self.account_hash(key)
        disclosed: model.Disclosure = {
            "bank_id": n["bank_id"],
            "account_hash": account,
            **self.output(n),
            "consent_id": n["consent_id"],
            "sent_at": n["created_at"],
        }
        return [
            self.message(n),
            Emit(catalog.AUDIT, account.encode(), self.codec.encode(model.DISCLOSURE, disclosed)),
        ]

    def decision(
        self,
        tx: model.Transaction,
        source: stream.Source,
        held: Held,
        outcome: model.Outcome,
        reason: model.WithheldReason | None,
        now: int,
        outputs: tuple[model.Notification, ...] = (),
    ) -> Emit:
        """The gate's decision on a transaction, listing the notifications it caused."""
        self.metrics.child(self.metrics.decisions, tx["bank_id"], outcome, reason or "").inc()
        record: model.Decision = {
            "bank_id": tx["bank_id"],
            "account_hash": self.hasher.account(tx["bank_id"], tx["account_id"]),
            "transaction_id": tx["transaction_id"],
            "source_topic": source.topic,
            "source_partition": source.partition,
            "source_offset": source.offset,
            "outcome": outcome,
            "reason": reason,
            "consent_id": held.consent_id,
            "consent_updated_at": held.version,
            "decided_at": now,
            "outputs": [self.output(n) for n in outputs],
        }
        return Emit(
            catalog.AUDIT,
            record["account_hash"].encode(),
            self.codec.encode(model.DECISION, record),
        )

    def audit(self, consent: model.Consent, record: Any, subject: str) -> Emit:
        key = self.hasher.account(consent["bank_id"], consent["account_id"]).encode()
        return Emit(catalog.AUDIT, key, self.codec.encode(subject, record))
