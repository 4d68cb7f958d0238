"""The receipt an erasure leaves on the audit topic: what was erased, and what remains
where, until when (the retention or compaction bound of each topic), and what of the
account each may hold in clear until then: every topic of the catalog, the DLQ and
the audit trail included (a compacted topic's bound is `max.compaction.lag.ms` plus
`delete.retention.ms`; the others', their retention: 14 days for the DLQ, 365 for the
audit trail)."""

from __future__ import annotations

from streams import catalog, model
from streams.agents.stored import ACCOUNTS_TABLE, ASKED_TABLE, KEYS_TABLE
from streams.redact import KeyedHasher
from streams.rules.consent import Ended


def receipt(
    cat: catalog.Catalog, hasher: KeyedHasher, consent: model.Consent, marker: Ended, now: int
) -> model.ErasureReceipt:
    """The receipt of erasing `consent`'s account at `now`, for the reason `marker` says."""
    account = hasher.account(consent["bank_id"], consent["account_id"])
    topics = cat.all([consent["bank_id"]])  # every copy: each says what it may hold
    return {
        "bank_id": consent["bank_id"],
        "account_hash": account,
        "consent_id": consent["consent_id"],
        "consent_updated_at": marker.version,
        "reason": marker.reason,
        "erased_at": now,
        "erased": [
            {"table": t, "keys": [account]} for t in (ACCOUNTS_TABLE, ASKED_TABLE, KEYS_TABLE)
        ],
        "remains": [
            {
                "topic": t.name,
                "policy": _policy(t),
                "until": now + t.removal_bound_ms,
                "holds": t.holds,
                "state": "SHREDDED" if t.shredded else "PURGED" if t.purged_ms else "BOUNDED",
            }
            for t in topics
        ],
    }


def _policy(topic: catalog.Topic) -> str:
    if topic.purged_ms is not None:
        return (
            f"purged {topic.purged_ms} ms after read; retention.ms={topic.config['retention.ms']}"
        )
    if topic.compacted:
        return f"max.compaction.lag.ms={topic.config['max.compaction.lag.ms']}"
    return f"retention.ms={topic.config['retention.ms']}"
