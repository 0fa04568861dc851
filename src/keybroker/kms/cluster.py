"""The cluster KMS: every DEK derived from a master secret with HKDF-SHA256, nothing stored.

``DEK = HKDF-SHA256(IKM = master secret, salt = salt, info = UTF-8 bytes of the id, L = size)``
(RFC 5869), the derivation Constellation's cluster KMS uses, so the same secret, salt and id
give the same key in both.

Limits, all checked before any work is done:

- master secret: at least 16 bytes; configured by URI, also not weak (all-zero, repeated
  patterns, typed words: :mod:`keybroker.kms.strength`), and a ``file:`` holding it must not be
  readable by group or others (``allowReadableKeyFile=true`` accepts it);
- salt: not empty (RFC 5869 allows an empty salt, Constellation does not); a key *service*
  should demand ``KEY_SERVICE_MIN_SALT`` (32) bytes by passing ``min_salt_bytes=32``;
- size: 1 to 8160 bytes (255 SHA-256 blocks, the HKDF maximum) — checked before allocating;
- id: a non-empty str of at most 1024 UTF-8 bytes; ids are case-sensitive.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Self

from keybroker.kms.errors import KMSConfigError
from keybroker.kms.keyfiles import (
    ALLOW_READABLE,
    allow_readable,
    check_key_file,
    check_key_strength,
)
from keybroker.kms.uri import ParsedURI, resolve_secret
from keybroker.secret import Secret

__all__ = [
    "KEY_SERVICE_MIN_SALT",
    "MAX_DEK_SIZE",
    "MIN_MASTER_SECRET",
    "ClusterKMS",
    "check_dek_size",
    "hkdf_sha256",
]

_HASH_LEN = 32
MAX_DEK_SIZE = 255 * _HASH_LEN  # 8160, RFC 5869's bound for SHA-256
MIN_MASTER_SECRET = 16
KEY_SERVICE_MIN_SALT = 32
_MAX_ID_BYTES = 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def check_dek_size(size: object) -> int:
    """Return ``size`` if it is an int in 1..8160.  Raises ``TypeError`` / ``ValueError``."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError("DEK size must be an int")
    if size < 1:
        raise ValueError("DEK size must be at least 1 byte")
    if size > MAX_DEK_SIZE:
        raise ValueError(f"DEK size must be at most {MAX_DEK_SIZE} bytes")
    return size


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256, exactly as specified (an empty salt means 32 zero bytes).
    Raises ``ValueError`` for a length outside 1..8160, before computing anything."""
    check_dek_size(length)
    return _expand(_extract(salt, ikm), info, length)


def _extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract: PRK = HMAC-SHA256(salt, IKM)."""
    return hmac.digest(salt or bytes(_HASH_LEN), ikm, "sha256")


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (``length`` already checked)."""
    if length <= _HASH_LEN:  # the common case: one block
        return hmac.digest(prk, info + b"\x01", "sha256")[:length]
    blocks: list[bytes] = []
    previous = b""
    for counter in range(1, -(-length // _HASH_LEN) + 1):
        previous = hmac.digest(prk, previous + info + bytes([counter]), "sha256")
        blocks.append(previous)
    return b"".join(blocks)[:length]


class ClusterKMS:
    """Derives DEKs from a master secret and salt; see the module docstring."""

    def __init__(
        self, master_secret: bytes | Secret, salt: bytes, *, min_salt_bytes: int = 1
    ) -> None:
        """Raises ``KMSConfigError`` for a short secret or salt, ``TypeError`` for wrong types."""
        secret = (
            master_secret.reveal_bytes() if isinstance(master_secret, Secret) else master_secret
        )
        if not isinstance(secret, bytes) or not isinstance(salt, bytes):
            raise TypeError("master secret and salt must be bytes")
        if len(secret) < MIN_MASTER_SECRET:
            raise KMSConfigError(f"master secret must be at least {MIN_MASTER_SECRET} bytes")
        if not salt:
            raise KMSConfigError("salt must not be empty")
        if len(salt) < min_salt_bytes:
            raise KMSConfigError(f"salt must be at least {min_salt_bytes} bytes")
        self._secret = secret
        self._salt = salt
        self._prk = _extract(salt, secret)  # the same for every DEK: computed once

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Parameter checks only.  Raises ``KMSConfigError``."""
        parsed.check_known("key", "salt", ALLOW_READABLE)
        parsed.require("key", "salt")
        allow_readable(parsed)

    @classmethod
    def from_uri(
        cls, parsed: ParsedURI, *, min_salt_bytes: int = 1, check_strength: bool = True
    ) -> Self:
        """``kms://cluster-kms?key=<base64url>&salt=<base64url>`` (URL-safe base64; padding
        optional).  ``key`` may be a secret reference (``env:``/``file:``); a ``file:`` that
        group or others may read is refused unless ``allowReadableKeyFile=true``.  A weak
        master secret (:mod:`keybroker.kms.strength`) is refused unless ``check_strength`` is
        false (library use only: known-answer vectors).  Raises ``KMSConfigError``."""
        cls.validate_uri(parsed)
        reference = parsed.params["key"]
        if reference.startswith("file:"):
            check_key_file(parsed, reference[5:], what="key file")
        key = resolve_secret(reference, what=f"{parsed.label} key")
        secret = _b64url(parsed.label, "key", key.reveal())
        salt = _b64url(parsed.label, "salt", parsed.params["salt"])
        if check_strength and len(secret) >= MIN_MASTER_SECRET:
            check_key_strength(parsed, secret, what="master secret (key)")
        try:
            return cls(secret, salt, min_salt_bytes=min_salt_bytes)
        except KMSConfigError as exc:
            raise KMSConfigError(f"{parsed.label}: {exc}") from None

    def derive(self, info: bytes, size: int) -> bytes:
        """HKDF over raw ``info`` bytes.  Raises ``ValueError`` for a bad size."""
        return _expand(self._prk, info, check_dek_size(size))

    async def get_dek(self, dek_id: str, dek_size: int) -> bytes:
        """The DEK for ``dek_id``.  Raises ``TypeError`` / ``ValueError`` for a bad id or size."""
        return _expand(self._prk, _id_bytes(dek_id), check_dek_size(dek_size))

    async def close(self) -> None:
        """Nothing to release (idempotent)."""

    def __repr__(self) -> str:
        return "ClusterKMS(master_secret=***, salt=***)"


def _id_bytes(dek_id: object) -> bytes:
    if not isinstance(dek_id, str):
        raise TypeError("DEK id must be a str")
    if not dek_id:
        raise ValueError("DEK id must not be empty")
    try:
        raw = dek_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("DEK id must be valid unicode (no lone surrogates)") from None
    if len(raw) > _MAX_ID_BYTES:
        raise ValueError(f"DEK id must be at most {_MAX_ID_BYTES} UTF-8 bytes")
    return raw


def _b64url(label: str, name: str, value: str) -> bytes:
    """Decode URL-safe base64, padded or not.  Messages never show the value."""
    if not _B64URL.fullmatch(value):
        raise KMSConfigError(f"{label}: parameter {name} is not URL-safe base64")
    stripped = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise KMSConfigError(f"{label}: parameter {name} is not URL-safe base64") from None
