"""`passerelle privacy disclosures`: what was sent to Messenger about one account, from
the audit trail alone (an access request, GDPR Art. 15).

The accounts stage writes what it sent about an account with what it sent, in the
same transaction, keyed like every audit record by the account's keyed hash: a
transaction's notifications in its Decision (`outputs`), any other in a Disclosure.
This reads the audit trail (read_committed), only the partition that hash is written
to, for that hash: each notification's time,
kind, id, the consent it went under, the keyed hash of the psid it went to and the
names of the data fields it carried; then the Decisions and erasure receipts counted.
It needs the deployment's hash key (PASSERELLE_HASH_KEY_FILE), as the worker does,
and credentials that may read the audit trail (`sre`)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from streams import model
from streams.catalog import AUDIT, bank_topic_name
from streams.codec import Codec
from streams.errors import CodecError
from streams.kafka import read_all
from streams.redact import KeyedHasher
from streams.rules.masking import mask_account
from streams.settings import Settings


async def report(settings: Settings, codec: Codec, bank_id: str, account_id: str) -> list[str]:
    """The lines of the answer: one per notification, oldest first, then the counts."""
    bank_topic_name(bank_id)  # refuses an id that is not a bank's
    settings.require_hash_key()
    wanted = KeyedHasher(settings.hash_key, settings.hash_key_id).account(bank_id, account_id)
    found: list[dict[str, Any]] = []  # Disclosures, and Outputs completed from their Decision
    counts: Counter[str] = Counter()
    hint = "run `passerelle topics create`"
    for record in await read_all(settings, AUDIT, hint, key=wanted.encode()):
        if record.key != wanted.encode() or record.value is None:
            continue
        try:
            subject, value = codec.decode_any(record.value)
        except CodecError:
            counts["unreadable"] += 1
            continue
        counts[subject] += 1
        if subject == model.DISCLOSURE:
            found.append(value)
        elif subject == model.DECISION:  # a transaction's notifications (v4)
            found += [
                {**out, "consent_id": value["consent_id"], "sent_at": value["decided_at"]}
                for out in value.get("outputs", [])
            ]
    lines = [line(d) for d in sorted(found, key=lambda d: d["sent_at"])]
    who = f"{bank_id}:{mask_account(account_id)} ({wanted})"
    lines.append(
        f"{len(found)} notification(s) sent about {who}; on the audit trail also "
        f"{counts[model.DECISION]} decision(s) and {counts[model.ERASURE_RECEIPT]} "
        f"erasure receipt(s)"
        + (f", {counts['unreadable']} unreadable" if counts["unreadable"] else "")
    )
    return lines


def line(d: Any) -> str:
    when = dt.datetime.fromtimestamp(d["sent_at"] / 1000, dt.UTC).isoformat(timespec="seconds")
    fields = ", ".join(d["fields"]) or "no data fields"
    return (
        f"{when} {d['kind']} {d['notification_id']} under {d['consent_id']} "
        f"to psid {d['psid_hash']}: {fields}"
    )
