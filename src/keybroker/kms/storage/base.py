"""The storage interface for wrapped DEKs (object storage, files, memory)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Storage"]


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
