"""Text from a bank is made safe before it reaches a chat (a property test over hostile
strings, and the cases that motivated it)."""

from __future__ import annotations

import unicodedata

import hypothesis.strategies as st
from hypothesis import given

from streams.rules.notify import for_transaction
from streams.rules.outputs import Release
from streams.rules.safe_text import MERCHANT_LIMIT, shown, shown_or_none
from tests import samples

NEVER = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
HOSTILE = st.text(
    alphabet=st.one_of(
        st.characters(),  # anything, surrogates and unassigned included
        st.sampled_from("\u202e\u202d\u2066\u2067\u2068\u2069\u200b\u200d\ufeff\n\r\t\x00\x1b"),
    ),
    max_size=400,
)


@given(HOSTILE)
def test_nothing_that_hides_reorders_or_breaks_a_line_is_ever_shown(text: str) -> None:
    """Whatever a bank sends, what is shown has no control, format, private-use,
    unassigned or separator character, no double space, and fits the limit; showing
    it again changes nothing."""
    safe = shown(text)
    assert not any(unicodedata.category(c) in NEVER for c in safe)
    assert "  " not in safe and safe == safe.strip() and len(safe) <= MERCHANT_LIMIT
    assert shown(safe) == safe


def test_a_bidi_override_cannot_reverse_what_the_customer_reads() -> None:
    assert shown("Fnac\u202e 000,01 € eirtsnoc") == "Fnac 000,01 € eirtsnoc"
    assert shown("Boulangerie\u200b\u200bPâtissière") == "BoulangeriePâtissière"


def test_line_breaks_and_tabs_become_single_spaces() -> None:
    assert shown("Le Bistrot\r\ndu\tCoin") == "Le Bistrot du Coin"


def test_a_long_name_is_cut_with_an_ellipsis_and_an_empty_one_is_none() -> None:
    assert shown("A" * 300) == "A" * (MERCHANT_LIMIT - 1) + "…"
    assert shown_or_none("\u202e\u200b\n") is None and shown_or_none(None) is None


def test_a_plain_name_is_unchanged() -> None:
    assert shown("Boulangerie Pâtissière ☕") == "Boulangerie Pâtissière ☕"


def test_a_notification_shows_the_safe_name_in_its_text_and_data() -> None:
    """The merchant reaches the notification's text and data only made safe."""
    tx = {**samples.TRANSACTION, "merchant_name": "Evil\u202eCorp\nLine two"}
    granted = Release(
        samples.CONSENT,
        frozenset({"account_masked", "amount_minor", "currency", "merchant_name", "category"}),
    )
    n = for_transaction("TRANSACTION", granted, tx, samples.BOOKED_AT)  # type: ignore[arg-type]
    assert n["data"]["merchant_name"] == "EvilCorp Line two"
    assert "\u202e" not in n["text"] and "\n" not in n["text"] and "EvilCorp Line two" in n["text"]
