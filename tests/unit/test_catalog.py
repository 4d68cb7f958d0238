"""The catalog names every topic of the contract with its retention or compaction bound."""

from __future__ import annotations

import re

import pytest

from streams import catalog
from streams.catalog import Catalog
from streams.settings import Settings


class TestBankTopics:
    def test_a_bank_topic_matches_the_subscription_pattern(self) -> None:
        """Every bank topic the catalog names is one the worker's pattern subscribes to."""
        assert re.match(catalog.BANK_TOPIC_PATTERN, catalog.bank_topic_name("banque-alpine-2"))

    def test_the_bank_id_comes_from_the_topic_name(self) -> None:
        """The bank a record speaks for is read off its topic."""
        assert catalog.bank_of_topic("bank.banque-alpine.transactions.v1") == "banque-alpine"

    @pytest.mark.parametrize(
        "topic",
        [
            "bank.A.transactions.v1",
            "bank.x.transactions.v2",
            "consents.v1",
            "bank..transactions.v1",
        ],
    )
    def test_other_topics_speak_for_no_bank(self, topic: str) -> None:
        """A topic that is not exactly an ingest topic names no bank."""
        assert catalog.bank_of_topic(topic) is None

    def test_an_invalid_bank_id_is_refused(self) -> None:
        """A bank id with dots or capitals could forge another topic name."""
        with pytest.raises(ValueError, match="lowercase"):
            catalog.bank_topic_name("Bank.Evil")


class TestCatalog:
    def test_the_design_topics_and_their_cleanup(self) -> None:
        """The shared topics are the design's, with its cleanup policies and retention."""
        topics = {t.name: t for t in Catalog(Settings()).all(["a"])}
        day = catalog.DAY_MS
        assert topics["bank.a.transactions.v1"].config["retention.ms"] == str(7 * day)
        assert topics["messenger.notifications.v1"].config["retention.ms"] == str(3 * day)
        assert topics["passerelle.dlq.v1"].config["retention.ms"] == str(14 * day)
        assert topics["consents.v1"].compacted
        assert not topics["passerelle.audit.v1"].compacted

    def test_every_topic_bounds_how_long_a_record_remains(self) -> None:
        """Each topic either expires records or compacts within max.compaction.lag.ms."""
        for topic in Catalog(Settings()).all(["a"]):
            assert topic.removal_bound_ms > 0
            if topic.compacted:
                assert "max.compaction.lag.ms" in topic.config

    def test_partitions_and_replication_come_from_settings(self) -> None:
        """Partition counts are configuration, the same for every topic (co-partitioning)."""
        topics = Catalog(Settings(partitions=6, replication_factor=3)).all(["a", "b"])
        assert {(t.partitions, t.replication_factor) for t in topics} == {(6, 3)}

    def test_every_topic_says_what_of_an_account_it_may_hold(self) -> None:
        """A receipt lists every copy and what it holds: a topic added to the catalog
        without saying so fails here, before a receipt could leave it out."""
        assert [t.name for t in Catalog(Settings()).all(["a"]) if not t.holds] == []


def test_a_receipt_names_every_copy_with_its_bound_and_what_it_holds() -> None:
    """The DLQ (14 days, shredded at once) and the audit trail (365 days) included: nothing
    of the account outlives the receipt unnamed, each copy's `until` is its bound, and
    its state says how it goes (our streams purged, the DLQ shredded, the rest bounded);
    the account's data key is among what was erased."""
    from streams.agents import erasure
    from streams.redact import KeyedHasher
    from streams.rules.consent import Ended
    from tests import samples

    cat = Catalog(Settings())
    now = samples.BOOKED_AT
    ended = Ended(samples.CONSENT["consent_id"], samples.CONSENT["updated_at"], "REVOKED_BY_PSU")
    receipt = erasure.receipt(cat, KeyedHasher("k" * 32, "k0"), samples.CONSENT, ended, now)
    remains = {r["topic"]: r for r in receipt["remains"]}
    assert set(remains) == {t.name for t in cat.all([samples.CONSENT["bank_id"]])}
    assert remains[catalog.DLQ]["until"] == now + 14 * catalog.DAY_MS
    assert remains[catalog.AUDIT]["until"] == now + catalog.AUDIT_RETENTION_MS
    assert "account" in remains[catalog.DLQ]["holds"]
    states = {t: r["state"] for t, r in remains.items() if r["state"] != "BOUNDED"}
    purged = {cat.account_stream().name: "PURGED", cat.psid_stream().name: "PURGED"}
    assert states == {catalog.DLQ: "SHREDDED", **purged}
    assert remains[cat.account_stream().name]["until"] == now + (600 + 30) * 1000
    assert "keys" in {e["table"] for e in receipt["erased"]}
