"""A key wrapper with local AES-256 keys: ``kms://local?keyFile=PATH`` — no cloud needed.

The key file is either

- exactly 32 raw bytes (make one with ``keybroker kms keygen PATH``, which writes it 0600):
  a single KEK version ``"1"``; or
- a JSON keyset, written by :meth:`LocalKeyWrapper.rotate` (``keybroker kms rotate``)::

      {"keybroker_keyset": 1, "kek_id": "local:0123456789abcdef", "primary": "2",
       "versions": {"1": "<base64 of 32 bytes>", "2": "<base64 of 32 bytes>"}}

  Versions are decimal numbers; ``primary`` (the highest) wraps, every version unwraps.  A
  keyset is never 32 bytes long, so the two forms cannot be confused.

Wrapped form: ``nonce (12 bytes) || AES-256-GCM(ciphertext || tag)`` under the version's key,
with the caller's ``aad`` as associated data.  The KEK id is ``local:`` plus the first 16 hex
digits of SHA-256 over the *first* key, kept in the keyset across rotations, so a blob wrapped
by another key file is recognised as such (still reported as the one opaque
``IntegrityError``).

Rotation rewrites the file atomically (temporary file, ``fsync``, ``rename``) under an
exclusive ``flock`` on ``PATH.lock``, so two concurrent rotations cannot lose a version.  A
wrapper meeting a version it does not know (another process rotated) re-reads the file once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.kms.base import WrappedKey
from keybroker.kms.errors import IntegrityError, KMSConfigError
from keybroker.kms.keyfiles import (
    ALLOW_READABLE,
    allow_readable,
    check_key_file,
    check_key_strength,
)
from keybroker.kms.uri import ParsedURI
from keybroker.private_files import UnsafeFileError, open_lock, replace_atomically

__all__ = ["LocalKeyWrapper"]

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEYSET_FORMAT = 1
_MAX_KEYSET_BYTES = 1 << 20


class LocalKeyWrapper:
    """AES-256-GCM key wrapping under local keys; see the module docstring."""

    name: ClassVar[str] = "local"
    binds_aad: ClassVar[bool] = True

    def __init__(self, key: bytes, *, kek_version: str = "1") -> None:
        """One key, one version.  Raises ``KMSConfigError`` unless ``key`` is 32 bytes."""
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            raise KMSConfigError(f"local key must be exactly {_KEY_BYTES} bytes")
        self._kek_id = _kek_id_of(key)
        self._keys = {kek_version: AESGCM(key)}
        self._primary = kek_version
        self._path: Path | None = None
        self._lock = threading.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """Raises ``KMSConfigError`` for missing/unknown parameters (no file access)."""
        parsed.check_known("keyFile", ALLOW_READABLE)
        parsed.require("keyFile")
        allow_readable(parsed)

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """``kms://local?keyFile=PATH[&allowReadableKeyFile=true]``.  Raises
        ``KMSConfigError`` (bad URI, unreadable file, a file group or others may read unless
        allowed, wrong size, malformed keyset, a weak key)."""
        cls.validate_uri(parsed)
        path = parsed.params["keyFile"]
        check_key_file(parsed, path, what="keyFile")
        kek_id, keys, primary = _read_key_file(Path(path))
        for version, key in keys.items():
            check_key_strength(parsed, key, what=f"keyFile {path} (KEK version {version})")
        return cls._from_keys(Path(path), kek_id, keys, primary)

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> Self:
        """Read a raw 32-byte key or a keyset.  Raises ``KMSConfigError``."""
        return cls._from_keys(Path(path), *_read_key_file(Path(path)))

    @classmethod
    def _from_keys(cls, path: Path, kek_id: str, keys: dict[str, bytes], primary: str) -> Self:
        wrapper = cls(keys[primary], kek_version=primary)
        wrapper._install(kek_id, keys, primary)
        wrapper._path = path
        return wrapper

    @property
    def kek_id(self) -> str:
        return self._kek_id

    @property
    def versions(self) -> list[str]:
        """Known KEK versions, oldest first."""
        with self._lock:
            return sorted(self._keys, key=_version_number)

    async def current_version(self) -> str:
        """The version new wraps use, after re-reading the key file (if there is one).
        Raises ``KMSConfigError`` if the file became unreadable."""
        if self._path is not None:
            await asyncio.to_thread(self._reload, self._path)
        return self._primary

    async def rotate(self) -> str:
        """Add a fresh random key as the new primary version, persist the keyset, and return
        the new version.  Raises ``KMSConfigError`` without a key file or if it cannot be
        written."""
        if self._path is None:
            raise KMSConfigError("kms://local: only a wrapper made from a keyFile can rotate")
        return await asyncio.to_thread(self._rotate_sync, self._path)

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        with self._lock:
            version, aead = self._primary, self._keys[self._primary]
        nonce = os.urandom(_NONCE_BYTES)
        return WrappedKey(self._kek_id, version, nonce + aead.encrypt(nonce, plaintext, aad))

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """Raises ``IntegrityError`` (other key or version, tampered ciphertext, wrong
        ``aad``)."""
        data = wrapped.ciphertext
        if wrapped.kek_id != self._kek_id or len(data) < _NONCE_BYTES + _TAG_BYTES:
            raise _cannot_unwrap()
        for aead in await self._keys_for(wrapped.kek_version):
            with contextlib.suppress(InvalidTag):
                return aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], aad)
        raise _cannot_unwrap()

    async def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"LocalKeyWrapper(kek_id={self._kek_id!r})"

    # -- internals -------------------------------------------------------------------------

    def _install(self, kek_id: str, keys: dict[str, bytes], primary: str) -> None:
        with self._lock:
            self._kek_id = kek_id
            self._keys = {v: AESGCM(k) for v, k in keys.items()}
            self._primary = primary

    async def _keys_for(self, version: str) -> list[AESGCM]:
        """The key of ``version``; every key (newest first) for a blob that names no version
        (a Constellation-format blob records the KEK id there).  The GCM tag tells them apart.
        """
        if version in ("", self._kek_id):
            with self._lock:
                return [self._keys[v] for v in sorted(self._keys, key=_version_number)][::-1]
        with self._lock:
            aead = self._keys.get(version)
        if aead is None and self._path is not None and version.isdecimal():
            # Another process may have rotated since we read the file: look once more.
            with contextlib.suppress(KMSConfigError):
                await asyncio.to_thread(self._reload, self._path)
            with self._lock:
                aead = self._keys.get(version)
        return [] if aead is None else [aead]

    def _reload(self, path: Path) -> None:
        kek_id, keys, primary = _read_key_file(path)
        if kek_id != self._kek_id:
            raise KMSConfigError(f"kms://local: keyFile {path} now holds another KEK")
        self._install(kek_id, keys, primary)

    def _rotate_sync(self, path: Path) -> str:
        with _exclusive(path.with_name(path.name + ".lock")):
            kek_id, keys, _ = _read_key_file(path)
            if kek_id != self._kek_id:
                raise KMSConfigError(f"kms://local: keyFile {path} now holds another KEK")
            new = str(max(_version_number(v) for v in keys) + 1)
            keys[new] = os.urandom(_KEY_BYTES)
            _write_keyset(path, kek_id, keys, new)
            self._install(kek_id, keys, new)
        return new


def _cannot_unwrap() -> IntegrityError:
    return IntegrityError("the wrapped key cannot be unwrapped with this KEK")


def _kek_id_of(key: bytes) -> str:
    return "local:" + hashlib.sha256(key).hexdigest()[:16]


def _version_number(version: str) -> int:
    return int(version) if version.isdecimal() else -1


def _read_key_file(path: Path) -> tuple[str, dict[str, bytes], str]:
    """(kek_id, versions, primary) from a raw key or a keyset.  Raises ``KMSConfigError``."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEYSET_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KMSConfigError(f"kms://local: cannot read keyFile {path}: {reason}") from None
    if len(data) == _KEY_BYTES:
        return _kek_id_of(data), {"1": data}, "1"
    if data.lstrip()[:1] != b"{":
        raise KMSConfigError(
            f"kms://local: keyFile {path} must hold exactly {_KEY_BYTES} bytes, not {len(data)}"
        )
    return _parse_keyset(path, data)


def _parse_keyset(path: Path, data: bytes) -> tuple[str, dict[str, bytes], str]:
    def bad(why: str) -> KMSConfigError:
        # Never quote the content: it holds keys.
        return KMSConfigError(f"kms://local: keyFile {path} is not a valid keyset: {why}")

    try:
        doc: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(doc, dict) or doc.get("keybroker_keyset") != _KEYSET_FORMAT:
        raise bad(f"keybroker_keyset must be {_KEYSET_FORMAT}")
    kek_id, primary, versions = doc.get("kek_id"), doc.get("primary"), doc.get("versions")
    if not isinstance(kek_id, str) or not kek_id.startswith("local:"):
        raise bad("kek_id must be a string starting with 'local:'")
    if not isinstance(versions, dict) or not versions:
        raise bad("versions must be a non-empty object")
    keys = {str(v): _keyset_key(k, bad) for v, k in versions.items()}
    if not all(v.isdecimal() and v == str(int(v)) and int(v) > 0 for v in keys):
        raise bad("version names must be positive decimal numbers")
    if primary != max(keys, key=_version_number):
        raise bad("primary must be the highest version")
    return kek_id, keys, primary


def _keyset_key(value: object, bad: Any) -> bytes:
    try:
        key = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise bad(f"every version must be {_KEY_BYTES} base64-encoded bytes")
    return key


def _write_keyset(path: Path, kek_id: str, keys: dict[str, bytes], primary: str) -> None:
    doc = {
        "keybroker_keyset": _KEYSET_FORMAT,
        "kek_id": kek_id,
        "primary": primary,
        "versions": {
            v: base64.b64encode(keys[v]).decode() for v in sorted(keys, key=_version_number)
        },
    }
    try:
        # readers see the old keyset or the new one, never half; the temp file is new (0600,
        # O_EXCL|O_NOFOLLOW, random name), so a planted link cannot redirect the write
        replace_atomically(path, json.dumps(doc, indent=1).encode() + b"\n")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KMSConfigError(f"kms://local: cannot write keyFile {path}: {reason}") from None


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``lock_path`` (created 0600) for the block."""
    try:
        fd = open_lock(lock_path)
    except UnsafeFileError as exc:
        raise KMSConfigError(f"kms://local: {exc}") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KMSConfigError(f"kms://local: cannot lock {lock_path}: {reason}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
