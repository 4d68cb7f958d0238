"""Accounts appear outside consented records only as keyed hashes or masked."""

from __future__ import annotations

import re

from streams.redact import KeyedHasher
from streams.rules.masking import mask_account

ACCOUNT = "FR7630006000011234567890189"


class TestKeyedHasher:
    def test_the_same_account_always_gives_the_same_hash(self) -> None:
        """A hash identifies an account across log lines and restarts."""
        assert KeyedHasher("k", "k0").account("b", ACCOUNT) == KeyedHasher("k", "k0").account(
            "b", ACCOUNT
        )

    def test_the_hash_depends_on_the_key(self) -> None:
        """Rotating the key changes every hash, and the key id says which key made it."""
        old, new = (
            KeyedHasher("k", "k0").account("b", ACCOUNT),
            KeyedHasher("k2", "k1").account("b", ACCOUNT),
        )
        assert old != new and old.startswith("k0:") and new.startswith("k1:")

    def test_the_hash_has_a_fixed_form_whatever_the_account(self) -> None:
        """A hash is the key id and 16 hex digits: it never carries the account itself."""
        digest = KeyedHasher("k", "k0").account("b", ACCOUNT)
        assert re.fullmatch(r"k0:[0-9a-f]{16}", digest) and ACCOUNT not in digest

    def test_parts_cannot_be_shifted_to_forge_a_hash(self) -> None:
        """("ab", "c") and ("a", "bc") hash differently."""
        hasher = KeyedHasher("k", "k0")
        assert hasher.digest("ab", "c") != hasher.digest("a", "bc")

    def test_the_repr_hides_the_key(self) -> None:
        """Printing a hasher shows its key id, never the key."""
        assert "s3cret" not in repr(KeyedHasher("s3cret", "k0"))


class TestMask:
    def test_a_masked_account_shows_the_last_four(self) -> None:
        """Customers see their account as •••• and its last four characters."""
        assert mask_account(ACCOUNT) == "•••• 0189"
