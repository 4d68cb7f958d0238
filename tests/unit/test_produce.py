"""`passerelle produce` checks each JSON line and names the line and the field at fault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.codec import Codec
from streams.tools.produce import parse_line
from tests import samples

GOOD: dict[str, Any] = {**samples.TRANSACTION, "bank_id": "alpine"}


class TestParseLine:
    def test_a_good_line_gives_the_account_key_and_a_frame(self, codec: Codec) -> None:
        """A valid transaction is keyed by its account and framed."""
        parsed = parse_line(codec, "alpine", 1, json.dumps(GOOD))
        assert not isinstance(parsed, str)
        key, frame = parsed
        assert key == GOOD["account_id"].encode() and frame[0] == 0

    def test_iso_timestamps_are_accepted(self, codec: Codec) -> None:
        """booked_at may be written as ISO 8601."""
        line = json.dumps({**GOOD, "booked_at": "2026-11-29T00:00:00+00:00"})
        assert not isinstance(parse_line(codec, "alpine", 1, line), str)

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("{not json", "line 7: not JSON"),
            (json.dumps({**GOOD, "bank_id": "other"}), "line 7: field bank_id: must be alpine"),
            (json.dumps({**GOOD, "currency": "EURO"}), "line 7: field currency: not an ISO 4217"),
            (json.dumps({**GOOD, "amount_minor": "12.50"}), "field amount_minor: must be a whole"),
            (json.dumps({**GOOD, "amount_minor": 12.5}), "field amount_minor: must be a whole"),
            (json.dumps({**GOOD, "balance_after_minor": 1.5}), "field balance_after_minor"),
            (json.dumps({**GOOD, "booked_at": "2026-11-29T00:00:00"}), "needs a zone offset"),
            (json.dumps({k: v for k, v in GOOD.items() if k != "status"}), "status"),
            (json.dumps({**GOOD, "booked_at": "yesterday"}), "line 7: field booked_at"),
        ],
    )
    def test_a_bad_line_is_named_with_its_number(
        self, codec: Codec, line: str, message: str
    ) -> None:
        """Each fault names the line number and the field, and never echoes the value."""
        error = parse_line(codec, "alpine", 7, line)
        assert isinstance(error, str) and message in error and error.startswith("line 7:")
        assert "12.50" not in error and "12.5" not in error
