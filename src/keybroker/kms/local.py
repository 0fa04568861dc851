"""A key wrapper with a local AES-256 key: ``kms://local?keyFile=PATH`` — no cloud needed.

The key file holds exactly 32 raw bytes (make one with ``head -c 32 /dev/urandom > kek``;
keep it ``chmod 600``).  Wrapped form: ``nonce (12 bytes) || AES-256-GCM(ciphertext || tag)``,
with the caller's ``aad`` as associated data.  The KEK id is ``local:`` plus the first 16 hex
digits of SHA-256 over the key, so a blob wrapped by another key file is recognised as such
(still reported as the one opaque ``IntegrityError``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import ClassVar, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import IntegrityError, KMSConfigError
from keybroker.kms.uri import ParsedURI

__all__ = ["LocalKeyWrapper"]

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16


class LocalKeyWrapper:
    """AES-256-GCM key wrapping under a local 32-byte key; see the module docstring."""

    name: ClassVar[str] = "local"
    binds_aad: ClassVar[bool] = True

    def __init__(self, key: bytes, *, kek_version: str = "1") -> None:
        """Raises ``KMSConfigError`` unless ``key`` is exactly 32 bytes."""
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            raise KMSConfigError(f"local key must be exactly {_KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._kek_id = "local:" + hashlib.sha256(key).hexdigest()[:16]
        self._kek_version = kek_version

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` for missing/unknown parameters (no file access)."""
        parsed.check_known("keyFile")
        parsed.require("keyFile")

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """``kms://local?keyFile=PATH``.  Raises ``KMSConfigError`` (bad URI, unreadable file,
        wrong size)."""
        cls.validate_uri(parsed)
        return cls.from_key_file(parsed.params["keyFile"])

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> Self:
        """Read a 32-byte key file.  Raises ``KMSConfigError``."""
        try:
            key = Path(path).read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise KMSConfigError(f"kms://local: cannot read keyFile {path}: {reason}") from None
        if len(key) != _KEY_BYTES:
            raise KMSConfigError(
                f"kms://local: keyFile {path} must hold exactly {_KEY_BYTES} bytes, not {len(key)}"
            )
        return cls(key)

    @property
    def kek_id(self) -> str:
        return self._kek_id

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, aad)
        return WrappedKey(self._kek_id, self._kek_version, nonce + sealed)

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """Raises ``IntegrityError`` (other key, tampered ciphertext, wrong ``aad``)."""
        data = wrapped.ciphertext
        if wrapped.kek_id != self._kek_id or len(data) < _NONCE_BYTES + _TAG_BYTES:
            raise IntegrityError("the wrapped key cannot be unwrapped with this KEK")
        try:
            return self._aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise IntegrityError("the wrapped key cannot be unwrapped with this KEK") from None

    async def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"LocalKeyWrapper(kek_id={self._kek_id!r})"
