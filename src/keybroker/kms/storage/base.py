"""The storage interface for wrapped DEKs (object storage, files, memory), and the
compare-and-swap a rewrap needs (:class:`Replaceable`: every built-in storage has it).

A storage with network set-up declares ``async open()``
(:class:`keybroker.kms.base.Openable`): file, S3, GCS and Azure Blob do.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Replaceable", "Storage"]


@runtime_checkable
class Storage(Protocol):
    """A flat store of small blobs by key id.  Implementations are async- and thread-safe.

    Every method raises :class:`~keybroker.kms.errors.BackendError` when the service fails
    (wrapping the SDK error with ``raise ... from``).
    """

    async def get(self, key_id: str) -> bytes:
        """The stored blob.  Raises ``DEKNotFound`` if absent."""
        ...

    async def put(self, key_id: str, data: bytes) -> None:
        """Store ``data`` only if ``key_id`` is absent (create-only, atomic: a reader sees the
        whole blob or nothing).  Raises ``DEKExists`` if present."""
        ...

    async def delete(self, key_id: str) -> None:
        """Remove the blob.  Raises ``DEKNotFound`` if absent."""
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted key ids starting with ``prefix``."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...


@runtime_checkable
class Replaceable(Storage, Protocol):
    """A storage with an atomic compare-and-swap, which ``rewrap`` needs (there is deliberately
    no delete-then-put fallback: see :mod:`keybroker.kms.rewrap`)."""

    async def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Store ``new`` only if the blob is still ``old``; ``False`` (and no change) if it is
        not.  Raises ``DEKNotFound`` (absent), ``ValueError``/``TypeError`` (bad id or blob),
        ``IntegrityError`` (a stored object too large to be a blob), ``BackendError``."""
        ...
