"""The KMS and key-wrapping interfaces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

__all__ = ["KMS", "KeyWrapper", "WrappedKey"]


@runtime_checkable
class KMS(Protocol):
    """Hands out data-encryption keys by id."""

    async def get_dek(self, dek_id: str, dek_size: int) -> bytes:
        """The DEK for ``dek_id`` (``dek_size`` bytes).  An external KMS creates and stores it on
        first use.  Raises ``ValueError`` for a bad id/size, ``IntegrityError`` for a stored blob
        that does not authenticate, ``BackendError`` when a service fails."""
        ...

    async def close(self) -> None:
        """Release clients and connections; idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """Output of :meth:`KeyWrapper.wrap`: the ciphertext plus which KEK (and version) made it."""

    kek_id: str
    kek_version: str
    ciphertext: bytes


@runtime_checkable
class KeyWrapper(Protocol):
    """A key-encryption key held by an external KMS.

    Optional members (see :mod:`keybroker.kms.binding`): ``binds_aad = True`` for a wrapper
    whose ``wrap`` binds ``aad`` (one that does not say so counts as not binding), and
    ``sign_digest``/``verify_digest`` for one that cannot bind but can sign inside the KMS.
    """

    #: scheme name in ``kms://<name>`` URIs
    name: ClassVar[str]

    async def wrap(self, plaintext: bytes, aad: bytes) -> WrappedKey:
        """Encrypt ``plaintext`` under the newest KEK version, binding ``aad`` where the
        backend supports associated data (encryption context).  Raises ``BackendError``."""
        ...

    async def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        """Decrypt with the KEK version recorded in ``wrapped``.  Raises ``IntegrityError`` if
        the ciphertext or ``aad`` is wrong, ``BackendError`` if the service fails."""
        ...

    async def close(self) -> None:
        """Release clients; idempotent."""
        ...
