"""Sealing the refresh tokens kept for per-person re-checks (AES-256-GCM). Pure: no
maubot, no database; config.py reads the key with it and the services seal with it.

The key is the instance config's `rechecks.token_key` (32 random bytes, base64): it lives
in maubot's instance config, not in the plugin's database, so a copy of the database
alone reveals no token. Each seal binds the provider and the external account as
associated data: a sealed token moved to another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os

KEY_BYTES = 32
NONCE_BYTES = 12


class VaultError(ValueError):
    """A sealed token that does not open (another key, or tampered with)."""


def read_key(text: str) -> bytes:
    """The key from its config text; ValueError says what is wrong (never the key)."""
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("must be 32 random bytes in base64 (see the README)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must be {KEY_BYTES} random bytes in base64, not {len(key)} bytes")
    return key


def new_key() -> str:
    """A fresh key, as the README tells operators to make one."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip("=")


class TokenVault:
    def __init__(self, key: bytes) -> None:
        # Imported here: cryptography comes with authlib, which provider rules need anyway.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, provider: str, external_id: str, token: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, token.encode(), _bound(provider, external_id))
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, provider: str, external_id: str, sealed: str) -> str:
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(sealed)
            clear = self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _bound(provider, external_id)
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise VaultError("a kept token does not open with this key") from None
        return clear.decode()


def _bound(provider: str, external_id: str) -> bytes:
    return f"{provider}\x00{external_id}".encode()
