"""Every topic of the contract as plain data.

The catalog is what `passerelle topics create` provisions and what the worker
and tools name topics by. Partition counts and replication come from settings;
retention, cleanup and compaction lag are the contract's and live here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from streams import model
from streams.limits import MAX_CHANGELOG_BATCH_BYTES, MAX_DLQ_BYTES, MAX_INPUT_BYTES, PURGE_EVERY_S
from streams.settings import Settings
from streams.topic import HOUR_MS as HOUR_MS
from streams.topic import Topic as Topic
from streams.topic import compacting as compacting
from streams.topic import deleting as deleting

DAY_MS = 24 * HOUR_MS

BANK_TOPIC_PATTERN = r"^bank\.[a-z0-9-]+\.transactions\.v1$"
_BANK_TOPIC = re.compile(BANK_TOPIC_PATTERN)
_BANK_ID = re.compile(r"^[a-z0-9-]+$")
MAX_BANK_ID = 40

CONSENTS = "consents.v1"
NOTIFICATIONS = "messenger.notifications.v1"
DLQ = "passerelle.dlq.v1"
AUDIT = "passerelle.audit.v1"
INBOUND = "messenger.inbound.v1"
REQUESTS = "consents.requests.v1"
FEEDBACK = "messenger.feedback.v1"

ENDED_MARKER = (
    "; an ended consent's id and version under the account's key, until the consent "
    "authority's tombstone for the account"
)
"""What the accounts stage's changelog keeps of an ended consent (docs/consent-gate.md)."""
# "delete, long" in the design: the audit trail is kept for a year.
AUDIT_RETENTION_MS = 365 * DAY_MS


def bank_topic_name(bank_id: str) -> str:
    """The ingest topic of one bank; the bank id is what the topic name says."""
    if not _BANK_ID.match(bank_id):
        raise ValueError(f"bank id {bank_id!r} must be lowercase letters, digits and dashes")
    return f"bank.{bank_id}.transactions.v1"


def outcomes_topic_name(bank_id: str) -> str:
    """The feed telling one bank, and only it, what became of each record it wrote."""
    bank_topic_name(bank_id)  # refuses an id that is not a valid topic part
    return f"bank.{bank_id}.outcomes.v1"


def is_bank_id(text: str) -> bool:
    """Whether `text` could be a bank id (a bounded metric label when read from a record)."""
    return len(text) <= MAX_BANK_ID and bool(_BANK_ID.match(text))


@functools.lru_cache(maxsize=4096)
def bank_of_topic(topic: str) -> str | None:
    """The bank of an ingest topic, or None (cached: ingest asks it of every record)."""
    if not _BANK_TOPIC.match(topic):
        return None
    return topic.split(".")[1]


@dataclass(frozen=True)
class Catalog:
    """The topics of one deployment, sized by its settings."""

    settings: Settings

    def _topic(
        self,
        name: str,
        key: str,
        subjects: tuple[str, ...],
        config: dict[str, str],
        writers: str,
        readers: str,
        holds: str,
        purged_ms: int | None = None,
        shredded: bool = False,
    ) -> Topic:
        return Topic(
            name=name,
            key=key,
            value_subjects=subjects,
            partitions=self.settings.partitions,
            replication_factor=self.settings.replication_factor,
            config=config,
            writers=writers,
            readers=readers,
            holds=holds,
            purged_ms=purged_ms,
            shredded=shredded,
        )

    def bank(self, bank_id: str) -> Topic:
        return self._topic(
            bank_topic_name(bank_id),
            "account_id",
            (model.TRANSACTION,),
            {**deleting(7 * DAY_MS), "max.message.bytes": str(MAX_INPUT_BYTES)},
            writers=f"bank-{bank_id}",
            readers="passerelle",
            holds="the bank's transactions: account number, amounts, merchants, balances",
        )

    def outcomes(self, bank_id: str) -> Topic:
        """What became of each record of the bank's ingest topic; read by that bank only."""
        return self._topic(
            outcomes_topic_name(bank_id),
            "source partition",
            (model.BANK_OUTCOME,),
            deleting(7 * DAY_MS),
            writers="passerelle (outcomes)",
            readers=f"bank-{bank_id}",
            holds="the bank's transaction ids, offsets and outcomes; no account",
        )

    def consents(self) -> Topic:
        return self._topic(
            CONSENTS,
            "<bank_id>:<account_id>",
            (model.CONSENT,),
            {**compacting(), "max.message.bytes": str(MAX_INPUT_BYTES)},
            writers="consent-authority",
            readers="passerelle",
            holds="the consent: account number, psid, Page, locale, thresholds (to its tombstone)",
        )

    def notifications(self) -> Topic:
        return self._topic(
            NOTIFICATIONS,
            "psid",
            (model.NOTIFICATION,),
            deleting(3 * DAY_MS),
            writers="passerelle",
            readers="messenger-worker",
            holds="notifications: psid, masked account, amounts and merchants if allowed",
        )

    def dlq(self) -> Topic:
        return self._topic(
            DLQ,
            "account hash (sealed), else the source key",
            (),
            {**deleting(14 * DAY_MS), "max.message.bytes": str(MAX_DLQ_BYTES)},
            writers="passerelle",
            readers="sre",
            holds="dead letters: reasons, coordinates; an account's records sealed (shredded)",
            shredded=True,
        )

    def audit(self) -> Topic:
        return self._topic(
            AUDIT,
            "account hash",
            (model.DECISION, model.DISCLOSURE, model.ERASURE_RECEIPT),
            deleting(AUDIT_RETENTION_MS),
            writers="passerelle",
            readers="compliance (sre)",
            holds=(
                "decisions, disclosures and receipts: the account's and psid's keyed hashes, "
                "transaction, consent and notification ids, the names of the fields sent"
            ),
        )

    def inbound(self) -> Topic:
        """What customers write to the Pages, as the messaging workers received it."""
        return self._topic(
            INBOUND,
            "psid",
            (model.INBOUND_MESSAGE,),
            {**deleting(DAY_MS), "max.message.bytes": str(MAX_INPUT_BYTES)},
            writers="messenger-worker",
            readers="passerelle",
            holds="what the customer wrote: psid and text",
        )

    def feedback(self) -> Topic:
        """What became of each notification at the delivery worker."""
        return self._topic(
            FEEDBACK,
            "psid",
            (model.DELIVERY_REPORT,),
            deleting(7 * DAY_MS),
            writers="messenger-worker",
            readers="passerelle",
            holds="delivery reports: psid, consent id, notification ids",
        )

    def requests(self) -> Topic:
        """A customer's STOP, passed on to the bank that owns the consent."""
        return self._topic(
            REQUESTS,
            "<bank_id>:<account_id>",
            (model.WITHDRAWAL_REQUEST,),
            deleting(30 * DAY_MS),
            writers="passerelle",
            readers="consent-authority",
            holds="a customer's STOP: account number (key), consent id",
        )

    def psid_stream(self) -> Topic:
        """Internal: each psid's messages and the accounts linked to it, in one order."""
        return self._topic(
            f"{self.settings.app_id}.psids",
            "psid",
            (model.INBOUND_MESSAGE,),
            deleting(DAY_MS),
            writers="passerelle (ingest, accounts)",
            readers="passerelle (conversation)",
            holds="the psid, what it asked (never its text), its links to accounts",
            purged_ms=self.purged_ms,
        )

    def account_stream(self) -> Topic:
        """Internal: transactions and consents of each account, in one order."""
        return self._topic(
            f"{self.settings.app_id}.accounts",
            "<bank_id>:<account_id>",
            (model.TRANSACTION, model.CONSENT),
            deleting(7 * DAY_MS),
            writers="passerelle (ingest)",
            readers="passerelle (accounts)",
            holds="the bank's transactions and the consents, as on their topics",
            purged_ms=self.purged_ms,
        )

    @property
    def purged_ms(self) -> int:
        """How long a record of one of our streams lasts once its stage committed it."""
        return (self.settings.purge_after_s + PURGE_EVERY_S) * 1000

    def changelog(self, stage: str) -> Topic:
        """Internal: the state of one stage; compacted, erased keys gone within a bound."""
        return self._topic(
            f"{self.settings.app_id}.{stage}-changelog",
            "<table>\\x00<key>",
            (),
            {**compacting(), "max.message.bytes": str(MAX_CHANGELOG_BATCH_BYTES)},
            writers="passerelle",
            readers="passerelle (restore)",
            holds="the stage's state: summary, consent, psid index (erased keys: tombstones)"
            + (ENDED_MARKER if stage == "accounts" else ""),
        )

    def internal(self) -> list[Topic]:
        return [
            self.account_stream(),
            self.changelog("accounts"),
            self.psid_stream(),
            self.changelog("conversation"),
        ]

    def shared(self) -> list[Topic]:
        """The topics every deployment has, whatever its banks."""
        return [
            self.consents(),
            self.notifications(),
            self.dlq(),
            self.audit(),
            self.inbound(),
            self.requests(),
            self.feedback(),
        ]

    def all(self, bank_ids: list[str]) -> list[Topic]:
        per_bank = [t for b in bank_ids for t in (self.bank(b), self.outcomes(b))]
        return per_bank + self.shared() + self.internal()
