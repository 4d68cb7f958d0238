"""Notifications: money in each locale, categories, ids, permission masks, the envelope."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import hypothesis.strategies as st
import pytest
from babel.numbers import format_currency
from hypothesis import given, settings

from streams.model import Consent, DigestData, Notification, NotificationKind, Transaction
from streams.rules import notify
from streams.rules.categories import category
from streams.rules.consent import Held
from streams.rules.money import ISO_4217, NBSP, NNBSP, format_money, minor_digits
from streams.rules.outputs import release
from tests import samples


def at(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def consent(**changes: Any) -> Consent:
    return {**samples.CONSENT, **changes}  # type: ignore[typeddict-item]  # test records


def tx(**changes: Any) -> Transaction:
    return {**samples.TRANSACTION, **changes}  # type: ignore[typeddict-item]  # test records


def sent(kind: NotificationKind, c: Consent, t: Transaction, now: int) -> Notification:
    """A transaction's notification as the accounts stage sends it: through the gate."""
    return notify.for_transaction(kind, release(kind, Held(c), now, t["booked_at"]), t, now)


def digest_of(c: Consent, d: DigestData, currency: str, occurred: int, now: int) -> Notification:
    return notify.for_digest(release("DAILY_DIGEST", Held(c), now), d, currency, occurred, now)


def ended_of(c: Consent, version: int, now: int) -> Notification:
    return notify.for_consent_ended(release("CONSENT_ENDED", Held(c), now), version, now)


class TestMoney:
    @pytest.mark.parametrize(
        ("minor", "currency", "locale", "text"),
        [
            (123456, "EUR", "fr-FR", f"1{NNBSP}234,56{NBSP}€"),
            (123456, "EUR", "en-GB", "€1,234.56"),
            (-123456, "EUR", "en-GB", "-€1,234.56"),
            (1250, "GBP", "fr-FR", f"12,50{NBSP}£GB"),
            (5, "EUR", "fr-FR", f"0,05{NBSP}€"),
            (123456789, "EUR", "fr-FR", f"1{NNBSP}234{NNBSP}567,89{NBSP}€"),
            (1234, "JPY", "en-GB", "JP¥1,234"),
            (1250, "CHF", "en-GB", "CHF12.50"),
            (150000, "XOF", "fr-FR", f"150{NNBSP}000{NBSP}F{NNBSP}CFA"),  # no minor digits
            (150000, "XAF", "fr-FR", f"150{NNBSP}000{NBSP}FCFA"),
            (-1234, "KWD", "en-GB", "-KWD1.234"),  # three
            (1250, "THB", "en-GB", "THB12.50"),
        ],
    )
    def test_each_locale_writes_money_its_way(
        self, minor: int, currency: str, locale: str, text: str
    ) -> None:
        """French: narrow-space groups, a comma, the symbol after; English: symbol first;
        each currency with ISO 4217's minor digits (CLDR, via babel)."""
        assert format_money(minor, currency, locale) == text

    @given(
        st.integers(-(10**12), 10**12),
        st.sampled_from(sorted(ISO_4217)),
        # not de-CH or fr-CH: their group separator is an apostrophe, which babel's own
        # quote handling strips from the number ("1'000'000" comes out "1000000"); ours
        # keeps it, as CLDR writes it
        st.sampled_from(["fr-FR", "en-GB", "de-DE", "pl-PL", "hi-IN", "ar-SA", "nl-NL", "pt-BR"]),
    )
    @settings(max_examples=2000, deadline=None)
    def test_the_fast_formatter_writes_what_babel_writes(
        self, minor: int, currency: str, locale: str
    ) -> None:
        """The shape read once from CLDR formats exactly as babel's format_currency, for
        every currency in use, whatever the amount, in locales with other separators,
        signs and groupings (pl-PL, hi-IN's 12,34,567, ar-SA)."""
        amount = Decimal(minor).scaleb(-minor_digits(currency))
        expected = format_currency(amount, currency, locale=locale.replace("-", "_"))
        assert format_money(minor, currency, locale) == expected


class TestCategories:
    @pytest.mark.parametrize(
        ("mcc", "channel", "name"),
        [
            ("5462", "CARD", "groceries"),
            ("5812", "CARD", "restaurants"),
            ("5541", "CARD", "transport"),
            (None, "ATM", "cash"),
            (None, "TRANSFER", "transfers"),
            ("9999", "CARD", "other"),
        ],
    )
    def test_mcc_and_channel_give_a_category(
        self, mcc: str | None, channel: str, name: str
    ) -> None:
        """A card payment is categorised by its MCC, other channels by what they are."""
        assert category(mcc, channel) == name


class TestTransactionNotification:
    def test_french_text_with_balance(self) -> None:
        """A French debit names amount, merchant and, with BALANCES, the balance."""
        n = sent("TRANSACTION", consent(), tx(), samples.BOOKED_AT)
        assert n["text"] == (
            f"Paiement de 1{NNBSP}234,56{NBSP}€ chez Boulangerie Pâtissière"
            f" — solde{NBSP}: 987,65{NBSP}€"
        )

    def test_english_text(self) -> None:
        """An English credit reads as one."""
        n = sent(
            "TRANSACTION",
            consent(locale="en-GB", permissions=["TRANSACTIONS"]),
            tx(amount_minor=150000, merchant_name=None),
            samples.BOOKED_AT,
        )
        assert n["text"] == "Credit of €1,500.00"

    def test_the_balance_needs_the_balances_permission(self) -> None:
        """Without BALANCES, neither data nor text carries the balance."""
        n = sent("TRANSACTION", consent(permissions=["TRANSACTIONS"]), tx(), samples.BOOKED_AT)
        assert n["data"]["balance_minor"] is None and "solde" not in n["text"]

    def test_the_id_is_the_same_on_replay_and_names_no_account(self) -> None:
        """The same transaction and kind give the same id; another kind another id."""
        first = sent("TRANSACTION", consent(), tx(), samples.BOOKED_AT)
        again = sent("TRANSACTION", consent(), tx(), samples.BOOKED_AT)
        large = sent("LARGE_TRANSACTION", consent(), tx(), samples.BOOKED_AT)
        assert first == again and first["notification_id"] != large["notification_id"]
        assert samples.TRANSACTION["account_id"] not in first["notification_id"] + first["text"]
        assert first["data"]["account_masked"] == "•••• 0189"

    def test_a_purchase_is_a_post_purchase_update_and_an_alert_an_account_update(self) -> None:
        """Messenger tags by kind: purchase confirmation, or a non-recurring account change."""
        purchase = sent("TRANSACTION", consent(quiet_hours=None), tx(), samples.BOOKED_AT)
        alert = sent("LOW_BALANCE", consent(quiet_hours=None), tx(), samples.BOOKED_AT)
        assert purchase["envelope"]["tag"] == "POST_PURCHASE_UPDATE"
        assert alert["envelope"] == {
            "messaging_type": "MESSAGE_TAG",
            "tag": "ACCOUNT_UPDATE",
            "silent": False,
            "recurring": False,
        }


class TestFrench:
    @pytest.mark.parametrize(
        ("merchant", "text"),
        [
            ("Employeur SA", f"Crédit de 1{NNBSP}500,00{NBSP}€ d’Employeur SA"),
            ("Fnac", f"Crédit de 1{NNBSP}500,00{NBSP}€ de Fnac"),
        ],
    )
    def test_de_is_elided_before_a_vowel(self, merchant: str, text: str) -> None:
        """French writes "d’Employeur" but "de Fnac"."""
        n = sent(
            "TRANSACTION",
            consent(permissions=["TRANSACTIONS"]),
            tx(amount_minor=150000, merchant_name=merchant),
            samples.BOOKED_AT,
        )
        assert n["text"] == text


class TestQuietHours:
    @pytest.mark.parametrize(
        ("instant", "silent"),
        [
            ("2026-03-28T21:30:00+00:00", True),  # 22:30 CET, inside 22:00–07:00
            ("2026-03-28T05:30:00+00:00", True),  # 06:30 CET
            ("2026-03-29T05:30:00+00:00", False),  # 07:30 CEST: the clocks moved
            ("2026-03-29T19:30:00+00:00", False),  # 21:30 CEST
            ("2026-03-29T20:30:00+00:00", True),  # 22:30 CEST
        ],
    )
    def test_quiet_hours_follow_local_time_across_dst(self, instant: str, silent: bool) -> None:
        """Quiet hours are local times of the consent's zone, spanning midnight, DST included."""
        assert notify.in_quiet_hours(consent(), at(instant)) is silent

    def test_quiet_hours_make_it_silent_never_dropped(self) -> None:
        """Inside quiet hours a notification is still built, marked silent."""
        n = sent("TRANSACTION", consent(), tx(), at("2026-03-28T21:30:00+00:00"))
        assert n["envelope"]["silent"] and n["text"]


class TestDigestAndEnd:
    def test_a_digest_is_recurring_and_untagged(self) -> None:
        """A recurring digest has no ACCOUNT_UPDATE tag; its id is the consent and the day."""
        digest = samples.DIGEST["data"]["digest"]
        assert digest is not None
        n = digest_of(
            consent(locale="en-GB", quiet_hours=None, permissions=["SUMMARIES"]),
            digest,
            "EUR",
            0,
            samples.BOOKED_AT,
        )
        assert n["envelope"] == {
            "messaging_type": "UPDATE",
            "tag": None,
            "silent": False,
            "recurring": True,
        }
        assert n["text"] == "Your day (28 Nov): 2 transactions, €12.50 spent, €0.00 received"
        assert n["notification_id"] == notify.notification_id(
            "DAILY_DIGEST", "cns-42", "2026-11-28"
        )

    def test_consent_ended_carries_no_account_data(self) -> None:
        """CONSENT_ENDED says the consent ended and carries only the masked account."""
        n = ended_of(consent(), 7, samples.BOOKED_AT)
        assert n["data"]["amount_minor"] is None and n["data"]["balance_minor"] is None
        assert "consentement a pris fin" in n["text"]
