"""Stored DEK blobs: our versioned, id-bound format, and Constellation's JSON (read and write).

Both seal the DEK with AES-256-GCM under a fresh random 32-byte *envelope key*, and have the
:class:`~keybroker.kms.base.KeyWrapper` wrap the envelope key.  :func:`open_dek` tells the two
apart by their first byte (``K`` of our magic, ``{`` of JSON).  Nothing binds a Constellation
blob to its id, so :func:`open_dek` reads one only with ``legacy=True``: the per-store
migration setting (``LegacyBlobs: read``), for blobs read from the store under the id asked
for — never for a blob a client hands in.

Every failure to read a blob is an :class:`IntegrityError`.  Structural problems (truncation,
bad header, wrong size) say what is wrong; a failed authentication says only that — never which
byte or field differed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass, replace
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.kms.base import KeyWrapper, NamedKEK, WrappedKey
from keybroker.kms.binding import binds_aad, can_sign, envelope_digest
from keybroker.kms.errors import IntegrityError
from keybroker.kms.gowrapping import parse_blob_info

__all__ = [
    "LEGACY_SETTINGS",
    "ConstellationBlob",
    "KeybrokerEnvelope",
    "LegacyBlobs",
    "WriteFormat",
    "is_legacy",
    "legacy_refused",
    "open_dek",
    "seal_dek",
]

WriteFormat = Literal["keybroker", "constellation"]

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MAX_FIELD = 1024  # kek id / version
_MAX_WRAPPED = 8192  # an RSA-4096 wrap is 512 bytes; AWS blobs ~ 200


def _auth_failed(key_id: str) -> IntegrityError:
    return IntegrityError(
        f"stored DEK for id {key_id!r} failed authentication "
        "(corrupted, swapped with another id, or sealed under another key)"
    )


def _fresh_aead() -> tuple[bytes, AESGCM, bytes]:
    key = os.urandom(_KEY_BYTES)
    return key, AESGCM(key), os.urandom(_NONCE_BYTES)


def _open_aead(key: bytes, nonce: bytes, sealed: bytes, aad: bytes | None, key_id: str) -> bytes:
    if len(key) != _KEY_BYTES:
        raise _auth_failed(key_id)
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise _auth_failed(key_id) from None


async def _unwrap(wrapper: KeyWrapper, wrapped: WrappedKey, aad: bytes, key_id: str) -> bytes:
    """Unwrap the envelope key; a wrapper's integrity failure becomes ours, naming the id."""
    try:
        return await wrapper.unwrap(wrapped, aad)
    except IntegrityError:
        raise _auth_failed(key_id) from None


def _check_size(key_id: str, stored: int, requested: int) -> None:
    if stored != requested:
        raise IntegrityError(
            f"stored DEK for id {key_id!r} is {stored} bytes, not the requested {requested}"
        )


@dataclass(frozen=True, slots=True)
class KeybrokerEnvelope:
    """Our format, version 1.  All integers big-endian::

        offset  size  field
        0       4     magic  b"KBDK"
        4       1     format version (1)
        5       2     n1 = length of kek_id        (1..1024)
        7       n1    kek_id, UTF-8
        .       2     n2 = length of kek_version   (0..1024)
        .       n2    kek_version, UTF-8
        .       2     n3 = length of wrapped_key   (1..8192)
        .       n3    wrapped_key: the envelope key as wrapped by the KEK
        .       2     n4 = length of signature     (1..1024)   version 2 only
        .       n4    signature by the KEK's KMS               version 2 only
        .       12    nonce
        .       rest  AES-256-GCM(envelope key, nonce, DEK, aad) = ciphertext || 16-byte tag

    The rest is exactly ``dek_size + 16`` bytes; the DEK size is implied by it and checked
    against the requested size.  Bindings (so a blob copied to another id, or read with another
    size, or relabelled with another KEK, fails):

    - the DEK's associated data is :meth:`dek_aad`: ``b"keybroker-dek\\0"``, version, then
      length-prefixed id, DEK size (u32), length-prefixed kek_id and kek_version;
    - the envelope key is wrapped with :meth:`wrap_aad` (version, id and size) as the
      wrapper's associated data / encryption context;
    - version 2 (a KEK that cannot bind associated data, see :mod:`keybroker.kms.binding`)
      adds the KMS's signature over :func:`~keybroker.kms.binding.envelope_digest`, checked
      before anything is unwrapped.  The associated data above is the same in both versions.
    """

    MAGIC = b"KBDK"
    VERSION = 1
    SIGNED_VERSION = 2

    kek_id: str
    kek_version: str
    wrapped_key: bytes
    nonce: bytes
    sealed: bytes
    signature: bytes = b""

    @classmethod
    def wrap_aad(cls, key_id: str, dek_size: int) -> bytes:
        """Associated data for wrapping the envelope key."""
        return b"keybroker-kek\0" + bytes([cls.VERSION]) + _lp(key_id) + struct.pack(">I", dek_size)

    @classmethod
    def dek_aad(cls, key_id: str, dek_size: int, kek_id: str, kek_version: str) -> bytes:
        """Associated data for sealing the DEK."""
        head = b"keybroker-dek\0" + bytes([cls.VERSION]) + _lp(key_id)
        return head + struct.pack(">I", dek_size) + _lp(kek_id) + _lp(kek_version)

    def encode(self) -> bytes:
        """The stored bytes.  Raises ``ValueError`` if a field is out of bounds."""
        fields = [self.kek_id.encode(), self.kek_version.encode(), self.wrapped_key]
        if not 1 <= len(fields[0]) <= _MAX_FIELD or len(fields[1]) > _MAX_FIELD:
            raise ValueError(f"kek_id must be 1..{_MAX_FIELD} bytes, kek_version 0..{_MAX_FIELD}")
        if not 1 <= len(self.wrapped_key) <= _MAX_WRAPPED:
            raise ValueError(f"wrapped key must be 1..{_MAX_WRAPPED} bytes")
        if len(self.signature) > _MAX_FIELD:
            raise ValueError(f"signature must be at most {_MAX_FIELD} bytes")
        if self.signature:
            fields.append(self.signature)
        out = self.MAGIC + bytes([self.SIGNED_VERSION if self.signature else self.VERSION])
        for f in fields:
            out += struct.pack(">H", len(f)) + f
        return out + self.nonce + self.sealed

    @classmethod
    def decode(cls, blob: bytes, key_id: str) -> KeybrokerEnvelope:
        """Parse ``blob``.  Raises ``IntegrityError`` naming the structural problem."""
        reader = _Reader(blob, key_id)
        if reader.take(4, "magic") != cls.MAGIC:
            raise reader.bad("it does not start with the keybroker magic")
        version = reader.take(1, "version")[0]
        if version not in (cls.VERSION, cls.SIGNED_VERSION):
            raise reader.bad(f"format version {version} is not supported")
        kek_id = reader.text("kek_id", 1, _MAX_FIELD)
        kek_version = reader.text("kek_version", 0, _MAX_FIELD)
        wrapped = reader.field("wrapped key", 1, _MAX_WRAPPED)
        signature = b""
        if version == cls.SIGNED_VERSION:
            signature = reader.field("signature", 1, _MAX_FIELD)
        nonce = reader.take(_NONCE_BYTES, "nonce")
        sealed = reader.rest()
        if len(sealed) <= _TAG_BYTES:
            raise reader.bad("it is truncated (no ciphertext)")
        return cls(kek_id, kek_version, wrapped, nonce, sealed, signature)

    @property
    def dek_size(self) -> int:
        return len(self.sealed) - _TAG_BYTES

    def digest(self, key_id: str) -> bytes:
        """What the KMS signs for a KEK that cannot bind associated data."""
        return envelope_digest(
            key_id,
            self.dek_size,
            self.kek_id,
            self.kek_version,
            self.wrapped_key,
            self.nonce,
            self.sealed,
        )

    @classmethod
    async def seal(
        cls, wrapper: KeyWrapper, key_id: str, dek: bytes, *, sign: bool = True
    ) -> bytes:
        """Encrypt ``dek`` for ``key_id``, signed by the KMS when the wrapper cannot bind
        associated data but can sign (``sign=False`` writes it unsigned, as before signing
        existed).  Raises ``BackendError`` from the wrapper."""
        key, aead, nonce = _fresh_aead()
        wrapped = await wrapper.wrap(key, cls.wrap_aad(key_id, len(dek)))
        aad = cls.dek_aad(key_id, len(dek), wrapped.kek_id, wrapped.kek_version)
        sealed = aead.encrypt(nonce, dek, aad)
        env = cls(wrapped.kek_id, wrapped.kek_version, wrapped.ciphertext, nonce, sealed)
        if sign and not binds_aad(wrapper) and can_sign(wrapper):
            signature = await wrapper.sign_digest(env.kek_version, env.digest(key_id))
            env = replace(env, signature=bytes(signature))
        return env.encode()

    async def open(
        self, wrapper: KeyWrapper, key_id: str, dek_size: int, *, trusted_store: bool = False
    ) -> bytes:
        """The DEK.  Raises ``IntegrityError`` (wrong size, failed authentication, an
        unsigned envelope of a KEK that cannot bind associated data outside a trusted store)."""
        _check_size(key_id, self.dek_size, dek_size)
        if not binds_aad(wrapper):
            await self._check_signature(wrapper, key_id, trusted_store)
        wrapped = WrappedKey(self.kek_id, self.kek_version, self.wrapped_key)
        key = await _unwrap(wrapper, wrapped, self.wrap_aad(key_id, dek_size), key_id)
        aad = self.dek_aad(key_id, dek_size, self.kek_id, self.kek_version)
        return _open_aead(key, self.nonce, self.sealed, aad, key_id)

    async def _check_signature(self, wrapper: KeyWrapper, key_id: str, trusted: bool) -> None:
        if not self.signature:
            if trusted:
                return
            raise IntegrityError(
                f"stored DEK for id {key_id!r} is not signed, and its key-encryption key cannot "
                "bind it to its id: only a trusted store (TrustedStore) opens it"
            )
        if not can_sign(wrapper):
            raise _auth_failed(key_id)
        if not await wrapper.verify_digest(self.kek_version, self.digest(key_id), self.signature):
            raise _auth_failed(key_id)


@dataclass(frozen=True, slots=True)
class ConstellationBlob:
    """Constellation's stored blob (go-kms-wrapping's ``BlobInfo``, marshalled as JSON)::

        {"ciphertext": b64, "iv": b64,
         "key_info": {"mechanism": 1, "key_id": "...", "wrapped_key": b64}}

    ``b64`` is standard base64 with padding (Go's encoding of ``[]byte``).  ``ciphertext`` is
    Go's ``gcm.Seal`` output: the AES-256-GCM ciphertext of the DEK followed by the 16-byte tag,
    under the 32-byte envelope key, with the 12-byte ``iv`` and *no* associated data.
    ``wrapped_key`` is the envelope key as wrapped by the cloud KMS (also without associated
    data / encryption context); ``key_id`` is the KEK version that wrapped it (AWS: the key ARN;
    GCP: the ``cryptoKeyVersions/N`` name; Azure: the key version).  Mechanism 1 is the
    "envelope AES-GCM" mechanism of the AWS and GCP wrappers; Azure Key Vault's is 0, which Go
    leaves out (:mod:`keybroker.kms.gowrapping` says what each wrapper writes).

    Nothing binds such a blob to its id; we read it for compatibility and write it only when
    asked to (``write_format="constellation"``).  The DEK length is still checked.
    """

    MECHANISM = 1

    ciphertext: bytes
    iv: bytes
    key_id: str
    wrapped_key: bytes

    def encode(self) -> bytes:
        """JSON in Go's field order."""
        doc = {
            "ciphertext": _b64(self.ciphertext),
            "iv": _b64(self.iv),
            "key_info": {
                "mechanism": self.MECHANISM,
                "key_id": self.key_id,
                "wrapped_key": _b64(self.wrapped_key),
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, blob: bytes, key_id: str) -> ConstellationBlob:
        """Parse ``blob`` as any go-kms-wrapping cloud wrapper writes it (AWS and GCP:
        mechanism 1; Azure: no mechanism, older Azure: base64url text in ``wrapped_key``; see
        :mod:`keybroker.kms.gowrapping`).  Raises ``IntegrityError`` naming the structural
        problem."""
        info = parse_blob_info(blob, key_id, max_field=_MAX_FIELD)
        if len(info.iv) != _NONCE_BYTES:
            raise _malformed(key_id, f"iv is not {_NONCE_BYTES} bytes")
        if len(info.ciphertext) <= _TAG_BYTES:
            raise _malformed(key_id, "ciphertext is truncated")
        return cls(info.ciphertext, info.iv, info.key_id, info.wrapped_key)

    @classmethod
    async def seal(cls, wrapper: KeyWrapper, key_id: str, dek: bytes) -> bytes:
        """Encrypt ``dek`` the way Constellation does.  Raises ``BackendError``."""
        key, aead, nonce = _fresh_aead()
        wrapped = await wrapper.wrap(key, b"")
        version = wrapped.kek_version or wrapped.kek_id
        return cls(aead.encrypt(nonce, dek, None), nonce, version, wrapped.ciphertext).encode()

    async def open(self, wrapper: KeyWrapper, key_id: str, dek_size: int) -> bytes:
        """The DEK.  Raises ``IntegrityError`` (wrong size, failed authentication)."""
        _check_size(key_id, len(self.ciphertext) - _TAG_BYTES, dek_size)
        named = wrapper.kek_id if isinstance(wrapper, NamedKEK) else ""
        kek_id = str(named or self.key_id)
        wrapped = WrappedKey(kek_id, self.key_id, self.wrapped_key)
        key = await _unwrap(wrapper, wrapped, b"", key_id)
        return _open_aead(key, self.iv, self.ciphertext, None, key_id)


async def seal_dek(
    wrapper: KeyWrapper,
    key_id: str,
    dek: bytes,
    *,
    fmt: WriteFormat = "keybroker",
    sign: bool = True,
) -> bytes:
    """The blob to store for ``dek`` (see :meth:`KeybrokerEnvelope.seal` for ``sign``).
    Raises ``ValueError`` (unknown format), ``BackendError``."""
    if fmt == "keybroker":
        return await KeybrokerEnvelope.seal(wrapper, key_id, dek, sign=sign)
    if fmt == "constellation":
        return await ConstellationBlob.seal(wrapper, key_id, dek)
    raise ValueError("write format must be 'keybroker' or 'constellation'")


LegacyBlobs = Literal["off", "read"]
LEGACY_SETTINGS: tuple[LegacyBlobs, ...] = ("off", "read")


def is_legacy(blob: bytes) -> bool:
    """Is ``blob`` in Constellation's format (JSON), rather than our envelope?"""
    return blob[:1] != KeybrokerEnvelope.MAGIC[:1] and blob.lstrip()[:1] == b"{"


def legacy_refused(key_id: str) -> IntegrityError:
    """The error for a Constellation-format blob read without the migration setting."""
    return IntegrityError(
        f"stored blob for id {key_id!r} is in Constellation's format, which nothing binds to "
        "its id: reading it needs the legacy-blob migration setting (LegacyBlobs: read), "
        "then rewrap the store"
    )


async def open_dek(
    wrapper: KeyWrapper,
    key_id: str,
    dek_size: int,
    blob: bytes,
    *,
    legacy: bool = False,
    trusted_store: bool = False,
) -> bytes:
    """The DEK stored in ``blob``.  Only our envelope, bound to ``key_id``, opens unless
    ``legacy`` (the migration setting: the caller vouches that ``blob`` is what is stored
    under ``key_id``, never a blob a client sent), which also reads Constellation's format.
    ``trusted_store`` opens unsigned envelopes of a KEK that cannot bind associated data (see
    :mod:`keybroker.kms.binding`), and is needed for such a KEK's Constellation blobs too
    (that format carries no signature).  Raises ``IntegrityError``, ``BackendError``."""
    if blob[:1] == KeybrokerEnvelope.MAGIC[:1]:
        env = KeybrokerEnvelope.decode(blob, key_id)
        return await env.open(wrapper, key_id, dek_size, trusted_store=trusted_store)
    if blob.lstrip()[:1] == b"{":
        if not legacy:
            raise legacy_refused(key_id)
        if not binds_aad(wrapper) and not trusted_store:
            # nothing signs Constellation's format: with a KEK that cannot bind, anyone with
            # the public key can make such a blob holding a DEK of their choice
            raise IntegrityError(
                f"stored blob for id {key_id!r} is in Constellation's format, which cannot be "
                "signed, and its key-encryption key cannot bind it to its id: only a trusted "
                "store (TrustedStore) opens it"
            )
        return await ConstellationBlob.decode(blob, key_id).open(wrapper, key_id, dek_size)
    raise _malformed(key_id, "its format is not recognised")


# -- internals -------------------------------------------------------------------------------


def _lp(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _malformed(key_id: str, why: str) -> IntegrityError:
    return IntegrityError(f"stored blob for id {key_id!r} is malformed: {why}")


class _Reader:
    """Bounded, length-checked reads over a blob."""

    def __init__(self, blob: bytes, key_id: str) -> None:
        self._blob, self._pos, self._key_id = blob, 0, key_id

    def bad(self, why: str) -> IntegrityError:
        return _malformed(self._key_id, why)

    def take(self, n: int, what: str) -> bytes:
        if self._pos + n > len(self._blob):
            raise self.bad(f"it is truncated (in {what})")
        chunk = self._blob[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def field(self, what: str, low: int, high: int) -> bytes:
        (n,) = struct.unpack(">H", self.take(2, f"{what} length"))
        if not low <= n <= high:
            raise self.bad(f"{what} length {n} is outside {low}..{high}")
        return self.take(n, what)

    def text(self, what: str, low: int, high: int) -> str:
        try:
            return self.field(what, low, high).decode("utf-8")
        except UnicodeDecodeError:
            raise self.bad(f"{what} is not UTF-8") from None

    def rest(self) -> bytes:
        return self._blob[self._pos :]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _obj(value: Any, key_id: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(key_id, f"{what} is not a JSON object")
    return value


def _unb64(doc: dict[str, Any], name: str, key_id: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise _malformed(key_id, f"{name} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(key_id, f"{name} is not base64") from None
