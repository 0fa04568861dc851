"""The KMS and key-wrapping interfaces, the optional capabilities a backend declares, and the
observer a KMS reports its operations to.

A key wrapper must be a :class:`KeyWrapper`; what only some backends can do is a capability of
its own, a ``runtime_checkable`` protocol checked with ``isinstance`` (a backend declares one by
defining its members; nothing is looked up by name)::

    capability        members                        built-in backends that have it
    Openable          open()                         aws, vault, pkcs11, kmip; storage: file,
                                                     s3, gcs, azure
    Rotatable         rotate()                       local, aws, gcp, azure
    VersionReporting  current_version()              local, aws, gcp
    DigestSigning     sign_digest(), verify_digest() azure (it cannot bind associated data)
    BindingDeclared   binds_aad                      every wrapper (azure: False)
    NamedKEK          kek_id                         every wrapper

A storage's compare-and-swap is :class:`keybroker.kms.storage.base.Replaceable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

__all__ = [
    "KMS",
    "NO_OBSERVER",
    "BindingDeclared",
    "DigestSigning",
    "KMSObserver",
    "KeyWrapper",
    "NamedKEK",
    "NoObserver",
    "Openable",
    "Rotatable",
    "VersionReporting",
    "WrappedKey",
]


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

    What only some wrappers can do is declared by the capability protocols below (see the
    module docstring); :mod:`keybroker.kms.binding` says why ``binds_aad`` and signing matter.
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


@runtime_checkable
class Openable(Protocol):
    """A wrapper or storage with network set-up to run before first use."""

    async def open(self) -> None:
        """Check the key (DescribeKey, a key-info read) or create the bucket; idempotent.
        :class:`~keybroker.kms.external.ExternalKMS` awaits it once before first use, the
        wrapper's before the storage's.  Raises ``KMSConfigError`` (the key or bucket is not
        usable as configured), ``BackendError`` (the service failed)."""
        ...


@runtime_checkable
class Rotatable(Protocol):
    """A wrapper whose KEK keybroker can rotate (``keybroker kms rotate``)."""

    async def rotate(self) -> str:
        """Make a new KEK version the one new wraps use, and return it (old versions still
        unwrap).  Raises ``KMSConfigError`` (the key cannot be rotated this way, e.g. a local
        key given without a key file), ``BackendError`` (the service failed or refused)."""
        ...


@runtime_checkable
class VersionReporting(Protocol):
    """A wrapper that can say which KEK version new wraps use without wrapping anything (a
    rewrap otherwise learns it from a probe ``wrap``)."""

    async def current_version(self) -> str:
        """The KEK version new wraps use, freshly looked up.  Raises ``KMSConfigError`` (the
        key became unusable), ``BackendError``."""
        ...


@runtime_checkable
class DigestSigning(Protocol):
    """A wrapper that cannot bind associated data but can sign inside the KMS (see
    :mod:`keybroker.kms.binding`)."""

    async def sign_digest(self, kek_version: str, digest: bytes) -> bytes:
        """The KMS's signature of the SHA-256 ``digest`` by KEK version ``kek_version``.
        Raises ``KMSConfigError`` (no such version), ``BackendError``."""
        ...

    async def verify_digest(self, kek_version: str, digest: bytes, signature: bytes) -> bool:
        """Is ``signature`` that signature?  ``False`` for any bad signature or unknown version
        (never raises for those).  Raises ``BackendError``."""
        ...


@runtime_checkable
class BindingDeclared(Protocol):
    """A wrapper that says whether its ``wrap`` binds ``aad``; one that says nothing counts as
    not binding."""

    binds_aad: ClassVar[bool]


@runtime_checkable
class NamedKEK(Protocol):
    """A wrapper that names its KEK (the id its :class:`WrappedKey` values carry)."""

    @property
    def kek_id(self) -> str: ...


@runtime_checkable
class KMSObserver(Protocol):
    """Told of the key operations a KMS performs, e.g. to count them in a metric.

    :class:`~keybroker.kms.external.ExternalKMS` reports each ``get_dek`` as ``("create",
    "ok")`` (a new DEK), ``("get", "ok")`` or ``("get", <exception class name>)``, with its
    wrapper's name as ``backend``.  The KMS knows nothing of who listens: the key service
    passes one that counts ``keybroker_kms_operations_total``.
    """

    def operation(self, backend: str, operation: str, outcome: str) -> None:
        """Record one operation; must not raise."""
        ...


class NoObserver:
    """The observer a KMS has unless given one: it ignores every operation."""

    def operation(self, backend: str, operation: str, outcome: str) -> None:
        return None


NO_OBSERVER: KMSObserver = NoObserver()
