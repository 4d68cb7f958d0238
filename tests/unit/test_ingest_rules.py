"""Ingest refuses records that speak for another bank or account, or cannot be real."""

from __future__ import annotations

from typing import Any

import pytest

from streams.model import Transaction
from streams.rules.ingest import check_transaction, split_consent_key
from tests import samples

ARRIVED = samples.BOOKED_AT + 60_000
KEY = samples.TRANSACTION["account_id"].encode()


def tx(**changes: Any) -> Transaction:
    return {**samples.TRANSACTION, **changes}  # type: ignore[typeddict-item]  # test records


class TestCheckTransaction:
    def test_a_real_transaction_passes(self) -> None:
        """The bank's own, keyed by its account, in a real currency, amount and time: accepted."""
        assert check_transaction("banque-alpine", KEY, tx(), ARRIVED) is None

    @pytest.mark.parametrize(
        ("changes", "key", "reason"),
        [
            ({"bank_id": "other-bank"}, KEY, "BANK_MISMATCH"),
            ({}, b"FR76-someone-else", "KEY_MISMATCH"),
            ({}, None, "KEY_MISMATCH"),
            ({"currency": "EURO"}, KEY, "BAD_CURRENCY"),
            ({"amount_minor": -(10**13)}, KEY, "BAD_AMOUNT"),
            ({"booked_at": 0}, KEY, "BAD_TIMESTAMP"),
            ({"booked_at": ARRIVED + 2 * 86_400_000}, KEY, "BAD_TIMESTAMP"),
        ],
    )
    def test_each_fault_has_its_reason(
        self, changes: dict[str, Any], key: bytes | None, reason: str
    ) -> None:
        """Every refusal carries the DLQ reason code that names it."""
        rejected = check_transaction("banque-alpine", key, tx(**changes), ARRIVED)
        assert rejected is not None and rejected.reason == reason


class TestConsentKey:
    @pytest.mark.parametrize("key", [b"no-colon", b":acc", b"bank:", None])
    def test_a_malformed_consent_key_is_refused(self, key: bytes | None) -> None:
        """A consent key must be <bank_id>:<account_id>, both non-empty."""
        assert not isinstance(split_consent_key(key), tuple)


class TestFrameAndLengths:
    def test_a_tombstone_or_an_oversized_value_is_refused_before_decoding(self) -> None:
        """No value, or more bytes than any frame of ours: dead-lettered undecoded."""
        from streams.rules.ingest import MAX_FRAME_BYTES, check_frame

        assert check_frame(None).reason == "NO_VALUE"  # type: ignore[union-attr]  # refused
        assert check_frame(b"\x00" * (MAX_FRAME_BYTES + 1)).reason == "TOO_LARGE"  # type: ignore[union-attr]  # refused
        assert check_frame(b"\x00" * MAX_FRAME_BYTES) is None

    @pytest.mark.parametrize(("field", "limit"), [("merchant_name", 256), ("transaction_id", 128)])
    def test_a_text_field_past_its_limit_is_refused(self, field: str, limit: int) -> None:
        """A field longer than any real one is a bank's bug: FIELD_TOO_LONG, naming the field."""
        assert check_transaction("banque-alpine", KEY, tx(**{field: "x" * limit}), ARRIVED) is None
        refused = check_transaction("banque-alpine", KEY, tx(**{field: "x" * (limit + 1)}), ARRIVED)
        assert refused is not None and refused.reason == "FIELD_TOO_LONG"
        assert field in refused.detail
