"""Envelope encryption: what makes a copy we cannot delete record by record erasable.

Each account that has a copy kept by age (a dead letter) gets a random 256-bit
data key. The copy is sealed with it (AES-256-GCM, the account's hash as
associated data, so a sealed value cannot be passed off as another account's).
The data key is kept only wrapped: sealed in turn by a key-encryption key (KEK)
that is configuration, read from a secret file. Erasure deletes the wrapped data
key; every copy sealed with it is then unreadable, whatever its retention
(crypto-shredding).

The KEK file holds one key a line, `<kid> <base64 of 32 bytes>`; the first line
wraps new data keys, every line unwraps (rotation: put the new key first, keep
the old ones until no wrapped key names them). A line starting with `#` is a
comment.

Byte layouts (the one place they are written; `tests/unit/test_crypto.py` pins them):

    wrapped data key   b"K1" | len(kid) (1 byte) | kid | nonce (12) | AES-GCM(KEK, dk)
    sealed value       b"S1" | nonce (12) | AES-GCM(dk, value)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.errors import SettingsError
from streams.settings import PREFIX, Settings

KEYS_TABLE = "keys"
"""The accounts stage's table of wrapped data keys, keyed by the account's hash."""
KEY_BYTES = 32
NONCE_BYTES = 12
WRAPPED = b"K1"
SEALED = b"S1"
ALGORITHM = "aes-256-gcm"
"""What the `sealed` header of a dead letter names."""

# A development KEK, public in this source: accepted only where the development
# hash key is (PASSERELLE_ALLOW_DEV_HASH_KEY=on: make run, the tests, the bench).
DEV_KID = "dev"
DEV_KEK = hashlib.sha256(b"passerelle-dev-only-key-encryption-key").digest()


class Unreadable(Exception):
    """A sealed value or wrapped key that cannot be opened: tampered with, sealed for
    another account, or under a KEK this keyring does not have."""


@dataclass(frozen=True)
class Keyring:
    """The key-encryption keys, by id; `active` wraps new data keys."""

    active: str
    keys: dict[str, bytes] = field(repr=False)

    @classmethod
    def development(cls) -> Keyring:
        return cls(DEV_KID, {DEV_KID: DEV_KEK})

    @classmethod
    def parse(cls, text: str, where: str = "the KEK file") -> Keyring:
        """Read `<kid> <base64 key>` lines; a wrong line raises SettingsError naming it."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kid, _, encoded = line.partition(" ")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                key = b""
            if not (0 < len(kid.encode()) < 256) or len(key) != KEY_BYTES or kid in keys:
                raise SettingsError(
                    f"{where}, line {n}: want `<kid> <base64 of {KEY_BYTES} bytes>`, "
                    "one line per key id"
                )
            keys[kid] = key
            order.append(kid)
        if not order:
            raise SettingsError(f"{where} holds no key")
        return cls(order[0], keys)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(f"cannot read the KEK file {path}: {exc.strerror}") from exc
        return cls.parse(text, str(path))

    def new_data_key(self, account: str) -> tuple[bytes, bytes]:
        """A fresh data key for `account` (its hash), and how it is kept: wrapped."""
        key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        return key, self.wrap(key, account)

    def wrap(self, key: bytes, account: str) -> bytes:
        kid = self.active.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.active]).encrypt(nonce, key, _wrap_aad(account))
        return WRAPPED + bytes([len(kid)]) + kid + nonce + sealed

    def unwrap(self, wrapped: bytes, account: str) -> bytes:
        """The data key of `account`; Unreadable if not wrapped by a KEK of this ring."""
        kid, nonce, sealed = _split_wrapped(wrapped)
        kek = self.keys.get(kid)
        if kek is None:
            raise Unreadable(f"wrapped under KEK {kid!r}, which this keyring does not hold")
        try:
            return AESGCM(kek).decrypt(nonce, sealed, _wrap_aad(account))
        except InvalidTag:
            raise Unreadable("the wrapped data key does not open for this account") from None

    @staticmethod
    def kid_of(wrapped: bytes) -> str:
        return _split_wrapped(wrapped)[0]


def encode_key(wrapped: bytes, used: int) -> bytes:
    """A data key as the `keys` table keeps it: wrapped, and when it last sealed (ms)."""
    return json.dumps({"wrapped": wrapped.hex(), "used": used}).encode()


def decode_key(raw: bytes) -> tuple[bytes, int]:
    """The wrapped data key, and when it last sealed something (ms)."""
    data = json.loads(raw)
    return bytes.fromhex(data["wrapped"]), int(data["used"])


def seal(key: bytes, value: bytes, account: str) -> bytes:
    """`value` sealed with the account's data key, bound to the account's hash."""
    nonce = os.urandom(NONCE_BYTES)
    return SEALED + nonce + AESGCM(key).encrypt(nonce, value, account.encode())


def open_sealed(key: bytes, sealed: bytes, account: str) -> bytes:
    if not sealed.startswith(SEALED) or len(sealed) < len(SEALED) + NONCE_BYTES + 16:
        raise Unreadable("not a sealed value")
    nonce = sealed[len(SEALED) : len(SEALED) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[len(SEALED) + NONCE_BYTES :], account.encode())
    except InvalidTag:
        raise Unreadable("the sealed value does not open with this account's key") from None


def _wrap_aad(account: str) -> bytes:
    return b"passerelle data key\x1f" + account.encode()


def _split_wrapped(wrapped: bytes) -> tuple[str, bytes, bytes]:
    if not wrapped.startswith(WRAPPED) or len(wrapped) < 3:
        raise Unreadable("not a wrapped data key")
    n = wrapped[2]
    kid = wrapped[3 : 3 + n].decode(errors="replace")
    rest = wrapped[3 + n :]
    if len(rest) < NONCE_BYTES + 16:
        raise Unreadable("a wrapped data key cut short")
    return kid, rest[:NONCE_BYTES], rest[NONCE_BYTES:]


def keyring_of(settings: Settings) -> Keyring:
    """The settings' key-encryption keys; the public development ring only where the
    settings allow the development keys."""
    if settings.kek_file is not None:
        return Keyring.load(settings.kek_file)
    if not settings.allow_dev_hash_key:
        raise SettingsError(
            f"{PREFIX}KEK_FILE is not set and the development key-encryption key is "
            f"public: set a KEK file, or {PREFIX}ALLOW_DEV_HASH_KEY=on on a laptop"
        )
    return Keyring.development()
