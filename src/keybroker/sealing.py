"""Sealed credentials: config values encrypted under a DEK from keybroker's KMS.

A sealed value is written in a credential field as ``${sealed:kb1.<payload>}``, where
``payload`` is URL-safe base64 (no padding) of::

    offset  size  field
    0       2     n = length of dek_id (1..256), big-endian
    2       n     dek_id, UTF-8: ``seal/<CloudAccountName>``
    .       12    nonce
    .       rest  AES-256-GCM(DEK, nonce, value as UTF-8, aad) = ciphertext || 16-byte tag

The DEK (32 bytes) comes from the configured KMS by ``dek_id``: derived by a cluster KMS, or
created once and stored by an external one.  Since the id is recorded in the value, opening it
needs only the KMS (and storage) URIs.

The associated data binds the value to where it belongs, so a value copied into another field
or another account (or opened with another key) fails::

    b"keybroker-sealed\\0" || version (1) || lp(dek_id) || lp(account) || lp(field)

where ``lp`` is a 2-byte big-endian length then UTF-8 bytes, ``account`` is the endpoint's
``CloudAccountName`` (not its index: reordering the file breaks nothing) and ``field`` the path
inside the endpoint, e.g. ``Credentials.Real.SecretKey``.

Every failure to open is a :class:`~keybroker.errors.ConfigError` whose message never contains
the value; a failed authentication is one opaque message (:data:`CANNOT_OPEN`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.errors import ConfigError, KMSError
from keybroker.kms.base import KMS, NO_OBSERVER, KMSObserver
from keybroker.kms.sync import SyncKMS
from keybroker.secret import Secret

__all__ = [
    "AUDIT_KEY_FIELD",
    "CANNOT_OPEN",
    "CREDENTIAL_KEYS",
    "FORMAT_VERSION",
    "TOKEN_PREFIX",
    "Sealer",
    "dek_id_for",
    "normalise_field",
    "sealed_reference",
]

FORMAT_VERSION = 1
TOKEN_PREFIX = f"kb{FORMAT_VERSION}."
CANNOT_OPEN = (
    "sealed value cannot be opened (tampered, moved from another field, or a different key)"
)
CREDENTIAL_KEYS = ("AccessKey", "SecretKey", "AccessToken", "ClientToken", "ClientSecret")
#: the field the audit signing key is sealed for (account ``_audit``)
AUDIT_KEY_FIELD = "Audit.SigningKey"

_DEK_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MAX_DEK_ID = 256
_MAX_VALUE_BYTES = 64 * 1024  # the config loader's bound on a secret file
_MAX_TOKEN = len(TOKEN_PREFIX) + 4 * (_MAX_VALUE_BYTES + 2 * _MAX_DEK_ID) // 3 + 64
_AAD_LABEL = b"keybroker-sealed\0"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_ROLE = r"(Proxy|Real|AdditionalProxies\[(0|[1-9][0-9]{0,4})\])"
_FIELD = re.compile(rf"Credentials\.{_ROLE}\.({'|'.join(CREDENTIAL_KEYS)})")
_KMS_TIMEOUT = 60.0


def dek_id_for(account: str) -> str:
    """The DEK id that seals ``account``'s values.  Raises ``ValueError`` if it is too long."""
    dek_id = f"seal/{account}"
    if not account or len(dek_id.encode("utf-8", "surrogatepass")) > _MAX_DEK_ID:
        raise ValueError(f"account name must be 1..{_MAX_DEK_ID - 5} bytes to be sealed for")
    return dek_id


def normalise_field(field: str) -> str:
    """``Real.SecretKey`` / ``credentials.real.secretkey`` -> ``Credentials.Real.SecretKey``;
    :data:`AUDIT_KEY_FIELD` (the audit signing key's file) as it is.

    Raises ``ValueError`` naming the accepted forms."""
    if field.strip() == AUDIT_KEY_FIELD:  # never a credential field: no value moves between
        return AUDIT_KEY_FIELD
    parts = field.strip().split(".")
    if parts and parts[0].lower() == "credentials":
        parts = parts[1:]
    canon = {k.lower(): k for k in ("Proxy", "Real", *CREDENTIAL_KEYS)}
    fixed = [canon.get(p.lower(), p) for p in parts]
    if fixed and fixed[0].lower().startswith("additionalproxies["):
        fixed[0] = "AdditionalProxies" + fixed[0][len("AdditionalProxies") :]
    result = "Credentials." + ".".join(fixed)
    if not _FIELD.fullmatch(result):
        raise ValueError(
            "field must be Proxy|Real|AdditionalProxies[N] . "
            f"{'|'.join(CREDENTIAL_KEYS)} (e.g. Real.SecretKey)"
        )
    return result


def sealed_reference(token: str) -> str:
    """``kb1...`` -> ``${sealed:kb1...}``, the text to put in a config file."""
    return f"${{sealed:{token}}}"


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return struct.pack(">H", len(raw)) + raw


def _aad(dek_id: str, account: str, field: str) -> bytes:
    return _AAD_LABEL + bytes([FORMAT_VERSION]) + _lp(dek_id) + _lp(account) + _lp(field)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict URL-safe base64 without padding.  Raises ``ConfigError``."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ConfigError("sealed value is not valid URL-safe base64 after 'kb1.'")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern above rules it out
        raise ConfigError("sealed value is not valid URL-safe base64 after 'kb1.'") from None
    if _b64encode(data) != text:
        # Unused low bits of the last character would let two texts carry one value: refuse,
        # so that any changed character is noticed.
        raise ConfigError("sealed value is not valid URL-safe base64 after 'kb1.'")
    return data


def _split(payload: bytes) -> tuple[str, bytes, bytes]:
    """(dek_id, nonce, ciphertext) of a decoded payload.  Raises ``ConfigError``."""
    if len(payload) < 2:
        raise ConfigError("sealed value is truncated")
    (n,) = struct.unpack(">H", payload[:2])
    if not 1 <= n <= _MAX_DEK_ID:
        raise ConfigError("sealed value is malformed (bad key id length)")
    rest = payload[2 + n :]
    if len(rest) < _NONCE_BYTES + _TAG_BYTES + 1:
        raise ConfigError("sealed value is truncated")
    try:
        dek_id = payload[2 : 2 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("sealed value is malformed (key id is not UTF-8)") from None
    return dek_id, rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]


class Sealer:
    """Seals and opens credential values with DEKs from a :class:`~keybroker.kms.base.KMS`.

    Blocking (the config loader is synchronous): the async KMS runs on a private event loop
    thread, started on first use.  Each DEK is fetched once per ``Sealer``.  Use as a context
    manager, or call :meth:`close`.
    """

    def __init__(self, kms: KMS, *, randbytes: Callable[[int], bytes] = os.urandom) -> None:
        self._kms = kms
        self._randbytes = randbytes  # injectable: known-answer tests fix the nonce
        self._deks: dict[str, AESGCM] = {}
        self._lock = threading.Lock()
        self._sync: SyncKMS | None = None
        self._closed = False

    @classmethod
    def from_uris(
        cls, kms_uri: str, storage_uri: str | None = None, *, observer: KMSObserver = NO_OBSERVER
    ) -> Self:
        """A sealer over ``keybroker.kms.from_uris(...)``; no I/O until first use.  ``observer``
        is told of the KMS's operations (the proxy counts them in its metrics).

        Raises ``KMSConfigError`` (bad or incomplete URI), ``MissingExtra`` (SDK missing)."""
        from keybroker.kms import from_uris

        return cls(from_uris(kms_uri=kms_uri, storage_uri=storage_uri, observer=observer))

    def seal(self, value: str | Secret, *, account: str, field: str) -> str:
        """The token (``kb1....``) for ``value`` in ``account``'s ``field``.

        Raises ``ValueError`` (empty or oversized value, bad field or account), ``KMSError``
        (the KMS failed), ``RuntimeError`` once closed."""
        try:
            raw = (value.reveal() if isinstance(value, Secret) else value).encode("utf-8")
        except UnicodeEncodeError:  # its text would quote the value
            raise ValueError("a sealed value must be valid unicode (no lone surrogates)") from None
        if not raw or len(raw) > _MAX_VALUE_BYTES:
            raise ValueError(f"a sealed value must be 1..{_MAX_VALUE_BYTES} bytes")
        field = normalise_field(field)
        dek_id = dek_id_for(account)
        nonce = self._randbytes(_NONCE_BYTES)
        sealed = self._aead(dek_id).encrypt(nonce, raw, _aad(dek_id, account, field))
        return TOKEN_PREFIX + _b64encode(_lp(dek_id) + nonce + sealed)

    def open(self, token: str, *, account: str, field: str) -> str:
        """The value sealed in ``token`` for ``account``'s ``field``.

        Raises ``ConfigError``: malformed token, the KMS failed, or :data:`CANNOT_OPEN`
        (tampered, made for another account or field, or under another key)."""
        if not token.startswith(TOKEN_PREFIX):
            raise ConfigError("sealed value is not in a known format (expected kb1.<base64url>)")
        if len(token) > _MAX_TOKEN:
            raise ConfigError("sealed value is too long")
        dek_id, nonce, sealed = _split(_b64decode(token[len(TOKEN_PREFIX) :]))
        try:
            expected = dek_id_for(account)
            field = normalise_field(field)
        except ValueError:
            raise ConfigError(CANNOT_OPEN) from None
        if dek_id != expected:
            # Made for another account.  Never fetch (an external KMS would create) its DEK.
            raise ConfigError(CANNOT_OPEN)
        try:
            raw = self._aead_for_open(dek_id).decrypt(nonce, sealed, _aad(dek_id, account, field))
            return raw.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise ConfigError(CANNOT_OPEN) from None

    def close(self) -> None:
        """Close the KMS and its loop thread; forget the DEKs.  Idempotent."""
        with self._lock:
            sync, self._sync = self._sync, None
            self._deks.clear()
            self._closed = True
        if sync is not None:
            sync.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sealer({self._kms!r})"

    # -- internals -------------------------------------------------------------------------

    def _aead_for_open(self, dek_id: str) -> AESGCM:
        """The DEK's cipher; a KMS failure becomes a ``ConfigError`` naming the error."""
        try:
            return self._aead(dek_id)
        except KMSError as exc:
            # Our KMS errors name URIs and parameters, never key material.
            raise ConfigError(f"sealed value cannot be opened: the KMS failed ({exc})") from None
        except (ValueError, TypeError):
            raise ConfigError(CANNOT_OPEN) from None
        except TimeoutError:
            raise ConfigError(
                f"sealed value cannot be opened: the KMS did not answer in {_KMS_TIMEOUT:g}s"
            ) from None

    def _aead(self, dek_id: str) -> AESGCM:
        with self._lock:
            aead = self._deks.get(dek_id)
        if aead is None:
            dek = self._sync_kms().get_dek(dek_id, _DEK_BYTES, timeout=_KMS_TIMEOUT)
            aead = AESGCM(dek)
            with self._lock:
                self._deks[dek_id] = aead
        return aead

    def _sync_kms(self) -> SyncKMS:
        with self._lock:
            if self._closed:
                raise RuntimeError("this Sealer is closed")
            if self._sync is None:
                self._sync = SyncKMS(self._kms)
            return self._sync
