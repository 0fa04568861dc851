"""The audit signing key: an Ed25519 key pair that signs the audit log's checkpoints.

``keybroker audit init`` writes the private key (PEM PKCS#8, mode 0600) and the public key
(PEM SubjectPublicKeyInfo) an auditor verifies with.  ``Audit.SigningKey`` names the private
key file; the file may instead hold the key sealed with keybroker's own sealing
(``${sealed:kb1....}`` for account ``_audit``, field ``Audit.SigningKey``), opened with the
``Seal`` section's KMS when the configuration is read.  Errors never show key bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keybroker.errors import ConfigError

__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SEALED_PREFIX",
    "SEAL_ACCOUNT",
    "SEAL_FIELD",
    "AuditSigner",
    "generate_key_pair",
    "key_id",
    "load_public_key",
    "load_signer",
    "parse_private_key",
    "read_private_key",
    "signature_valid",
]

PRIVATE_KEY_NAME = "audit-signing.key"
PUBLIC_KEY_NAME = "audit-signing.pub"
SEAL_ACCOUNT, SEAL_FIELD = "_audit", "Audit.SigningKey"
SEALED_PREFIX = "${sealed:"
_MAX_KEY_FILE = 16 * 1024


def key_id(public: Ed25519PublicKey) -> str:
    """16 hex digits naming a public key (the first 8 bytes of SHA-256 of its raw bytes)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class AuditSigner:
    """Signs checkpoints; ``repr`` never shows the key."""

    key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def __repr__(self) -> str:
        return f"AuditSigner(key_id={self.key_id})"


def signature_valid(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def generate_key_pair(
    directory: str | os.PathLike[str], seal: Callable[[str], str] | None = None
) -> tuple[Path, Path]:
    """Write a new key pair into ``directory`` (created 0700 if missing); return the paths.

    ``seal`` turns the private key's PEM into the text stored instead (a sealed reference).
    Raises :class:`FileExistsError` rather than replace an existing key, :class:`OSError`,
    and whatever ``seal`` raises (before anything is written)."""
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = folder / PRIVATE_KEY_NAME, folder / PUBLIC_KEY_NAME
    for path in (private, public):
        if path.exists():
            raise FileExistsError(f"{path} already exists; not replaced")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if seal is not None:
        pem = (seal(pem.decode("ascii")) + "\n").encode("ascii")
    _write_new(private, pem, 0o600)
    spki = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(public, spki, 0o644)
    return private, public


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_private_key(path: str) -> str:
    """The text of a private key file (PEM, or a sealed reference).  Raises ``ConfigError``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"Audit.SigningKey: cannot read {path!r}: {reason}") from None
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"Audit.SigningKey: {path!r} is too large for a key file")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"Audit.SigningKey: {path!r} is not a PEM key file") from None


def parse_private_key(text: str) -> AuditSigner:
    """An :class:`AuditSigner` from PEM text.  Raises ``ConfigError`` (without the bytes)."""
    try:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigError("Audit.SigningKey: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("Audit.SigningKey: the key is not an Ed25519 key")
    return AuditSigner(key)


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file.  Raises ``ValueError`` (not a key) or
    :class:`OSError` (unreadable)."""
    with open(path, "rb") as fh:
        data = fh.read(_MAX_KEY_FILE + 1)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_signer(path: str) -> AuditSigner:
    """The signer of the PEM file at ``path``; a sealed file (``${sealed:...}``) is opened
    with keybroker's sealing when the configuration is read (:func:`unseal_signing_key`).
    Raises ``ConfigError``."""
    text = read_private_key(path)
    if text.startswith(SEALED_PREFIX):
        raise ConfigError(
            "Audit.SigningKey: the key file is sealed; a Seal section is needed to open it"
        )
    return parse_private_key(text)
