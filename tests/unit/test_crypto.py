"""Envelope encryption (`streams.crypto`) and the accounts stage's use of it
(`agents.sealing`): what seals opens only for its account and only while its key
is kept; erasing the account shreds its dead letters; the KEK rotates."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams import crypto
from streams.agents.sealing import KEY_UNUSED_MS, Sealer
from streams.agents.stored import KEYS_TABLE
from streams.core.store import PartitionStore
from streams.crypto import decode_key
from streams.errors import SettingsError
from streams.settings import Settings

ACCOUNT = "k0:1f2e3d4c5b6a7988"
OTHER = "k0:0000000000000000"
NOW = 1_764_000_000_000


def line(kid: str, byte: int) -> str:
    return f"{kid} {base64.b64encode(bytes([byte]) * 32).decode()}"


def test_a_sealed_value_opens_with_its_key_for_its_account_only() -> None:
    """Sealed under an account's data key, a value opens for that account; for another
    account, with another key, or altered by one bit, it does not open."""
    ring = crypto.Keyring.development()
    key, _ = ring.new_data_key(ACCOUNT)
    sealed = crypto.seal(key, b"FR76 3000 6000 0112 3456 7890 189", ACCOUNT)
    assert b"FR76" not in sealed and sealed.startswith(crypto.SEALED)
    assert crypto.open_sealed(key, sealed, ACCOUNT) == b"FR76 3000 6000 0112 3456 7890 189"
    other, _ = ring.new_data_key(ACCOUNT)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    wrong = ((key, sealed, OTHER), (other, sealed, ACCOUNT), (key, tampered, ACCOUNT))
    for k, value, account in wrong:
        with pytest.raises(crypto.Unreadable):
            crypto.open_sealed(k, value, account)


def test_the_layouts_are_what_the_module_says() -> None:
    """A wrapped key is `K1 | len(kid) | kid | nonce | AES-GCM`; a sealed value `S1 | nonce
    | AES-GCM`: opened here with the library alone, from the documented offsets."""
    ring = crypto.Keyring.parse(line("k2026", 7))
    key, wrapped = ring.new_data_key(ACCOUNT)
    assert wrapped[:2] == b"K1" and wrapped[2] == 5 and wrapped[3:8] == b"k2026"
    aad = b"passerelle data key\x1f" + ACCOUNT.encode()
    assert AESGCM(bytes([7]) * 32).decrypt(wrapped[8:20], wrapped[20:], aad) == key
    sealed = crypto.seal(key, b"letter", ACCOUNT)
    assert AESGCM(key).decrypt(sealed[2:14], sealed[14:], ACCOUNT.encode()) == b"letter"
    assert len(sealed) == 2 + 12 + len(b"letter") + 16


def test_a_rotated_ring_unwraps_old_keys_and_wraps_new_ones_under_the_first() -> None:
    """The first line wraps; a key wrapped under an older line still unwraps; a key wrapped
    under a KEK the ring no longer holds does not."""
    old = crypto.Keyring.parse(line("k1", 1))
    key, wrapped = old.new_data_key(ACCOUNT)
    rotated = crypto.Keyring.parse(f"# rotated\n{line('k2', 2)}\n{line('k1', 1)}\n")
    assert rotated.active == "k2" and rotated.unwrap(wrapped, ACCOUNT) == key
    assert crypto.Keyring.kid_of(rotated.wrap(key, ACCOUNT)) == "k2"
    with pytest.raises(crypto.Unreadable, match="'k1'"):
        crypto.Keyring.parse(line("k2", 2)).unwrap(wrapped, ACCOUNT)
    with pytest.raises(crypto.Unreadable):
        old.unwrap(wrapped, OTHER)  # a wrapped key is bound to its account too


SHORT = "k1 " + base64.b64encode(b"short").decode()


@pytest.mark.parametrize(
    "text", ["", "# a comment\n", "k1 not-base64!", SHORT, f"{line('k1', 1)}\n{line('k1', 2)}"]
)
def test_a_wrong_kek_file_is_refused_in_one_line(text: str) -> None:
    """Empty, a bad key, a short key or a kid twice: one line naming the file."""
    with pytest.raises(SettingsError) as refused:
        crypto.Keyring.parse(text, "kek")
    assert "\n" not in str(refused.value) and str(refused.value).startswith("kek")


def test_the_development_ring_needs_the_development_switch(tmp_path: Path) -> None:
    """Without a KEK file a worker refuses to start unless the development keys are
    allowed; with one, it uses the file's keys."""
    with pytest.raises(SettingsError, match="PASSERELLE_KEK_FILE"):
        crypto.keyring_of(Settings())
    assert crypto.keyring_of(Settings(allow_dev_hash_key=True)) == crypto.Keyring.development()
    (tmp_path / "kek").write_text(line("k9", 9) + "\n")
    ring = crypto.keyring_of(Settings(kek_file=tmp_path / "kek"))
    assert ring.active == "k9" and crypto.DEV_KEK not in ring.keys.values()


class TestSealer:
    def sealer(self, ring: crypto.Keyring | None = None) -> Sealer:
        return Sealer(ring or crypto.Keyring.development(), lambda key: f"h:{key.decode()}")

    def test_an_accounts_key_is_made_once_and_kept_wrapped(self, tmp_path: Path) -> None:
        """The first use makes the key and keeps it wrapped (never in clear) under the
        account's hash; the next use finds the same key."""
        store, sealer = PartitionStore(tmp_path / "p"), self.sealer()
        key = sealer.data_key(store, "h:bank:acct", NOW)
        raw = store.get(KEYS_TABLE, b"h:bank:acct")
        assert raw is not None and key.hex() not in raw.decode()
        assert sealer.data_key(store, "h:bank:acct", NOW + 1) == key

    def test_shredding_makes_the_sealed_letters_unreadable(self, tmp_path: Path) -> None:
        """After `shred`, the account's next key is another: what was sealed before does
        not open with anything the store holds."""
        store, sealer = PartitionStore(tmp_path / "p"), self.sealer()
        before = sealer.data_key(store, "h:bank:acct", NOW)
        sealed = crypto.seal(before, b"letter", "h:bank:acct")
        sealer.shred(store, b"bank:acct")
        assert store.get(KEYS_TABLE, b"h:bank:acct") is None
        after = sealer.data_key(store, "h:bank:acct", NOW)
        with pytest.raises(crypto.Unreadable):
            crypto.open_sealed(after, sealed, "h:bank:acct")

    def test_a_key_under_a_retired_kek_is_wrapped_again_when_used(self, tmp_path: Path) -> None:
        """After a rotation, using a key wrapped under the old KEK wraps it under the new:
        the old KEK can be retired once every used key is wrapped again."""
        store = PartitionStore(tmp_path / "p")
        key = self.sealer(crypto.Keyring.parse(line("k1", 1))).data_key(store, "h:a", NOW)
        rotated = crypto.Keyring.parse(f"{line('k2', 2)}\n{line('k1', 1)}")
        assert self.sealer(rotated).data_key(store, "h:a", NOW + 1) == key
        kept = store.get(KEYS_TABLE, b"h:a")
        assert kept is not None
        wrapped, _ = decode_key(kept)
        assert crypto.Keyring.parse(line("k2", 2)).unwrap(wrapped, "h:a") == key

    def test_a_key_is_unused_once_its_letters_have_expired(self, tmp_path: Path) -> None:
        """A key that sealed nothing for the DLQ's retention and a day can go."""
        store, sealer = PartitionStore(tmp_path / "p"), self.sealer()
        sealer.data_key(store, "h:a", NOW)
        raw = store.get(KEYS_TABLE, b"h:a")
        assert raw is not None
        assert not sealer.unused(raw, NOW + KEY_UNUSED_MS - 1)
        assert sealer.unused(raw, NOW + KEY_UNUSED_MS)
