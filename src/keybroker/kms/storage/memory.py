"""In-memory storage (``storage://memory``): for tests and single-process use.

Unlike Constellation's map, it is safe across threads and event loops: one ``threading.Lock``
guards the dict, held only for dict operations (never across an ``await``).
"""

from __future__ import annotations

import threading
from typing import Self

from keybroker.kms.errors import DEKExists, DEKNotFound
from keybroker.kms.storage import validate_blob, validate_key_id, validate_prefix
from keybroker.kms.uri import ParsedURI

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """A dict of blobs behind a lock; see :class:`keybroker.kms.storage.base.Storage`."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def validate_uri(cls, parsed: ParsedURI) -> None:
        """``storage://memory`` takes no parameters.  Raises ``KMSConfigError``."""
        parsed.check_known()

    @classmethod
    def from_uri(cls, parsed: ParsedURI) -> Self:
        """A new, empty store.  Raises ``KMSConfigError`` for any parameter."""
        cls.validate_uri(parsed)
        return cls()

    async def get(self, key_id: str) -> bytes:
        """Raises ``DEKNotFound``, ``ValueError`` (bad id)."""
        validate_key_id(key_id)
        with self._lock:
            blob = self._blobs.get(key_id)
        if blob is None:
            raise DEKNotFound(f"no DEK stored for id {key_id!r}")
        return blob

    async def put(self, key_id: str, data: bytes) -> None:
        """Create-only.  Raises ``DEKExists``, ``ValueError`` (bad id or blob)."""
        validate_key_id(key_id)
        blob = validate_blob(data)
        with self._lock:
            if key_id in self._blobs:
                raise DEKExists(f"a DEK is already stored for id {key_id!r}")
            self._blobs[key_id] = blob

    async def replace(self, key_id: str, old: bytes, new: bytes) -> bool:
        """Compare-and-swap: store ``new`` only if the blob is still ``old``; ``False`` (and no
        change) if it is not.  Not part of the Storage protocol.  Raises ``DEKNotFound``,
        ``ValueError`` (bad id or blob)."""
        validate_key_id(key_id)
        expected, blob = validate_blob(old), validate_blob(new)
        with self._lock:
            current = self._blobs.get(key_id)
            if current is None:
                raise DEKNotFound(f"no DEK stored for id {key_id!r}")
            if current != expected:
                return False
            self._blobs[key_id] = blob
            return True

    async def delete(self, key_id: str) -> None:
        """Raises ``DEKNotFound``, ``ValueError`` (bad id)."""
        validate_key_id(key_id)
        with self._lock:
            if self._blobs.pop(key_id, None) is None:
                raise DEKNotFound(f"no DEK stored for id {key_id!r}")

    async def list(self, prefix: str = "") -> list[str]:
        """Sorted ids starting with ``prefix``."""
        validate_prefix(prefix)
        with self._lock:
            return sorted(k for k in self._blobs if k.startswith(prefix))

    async def close(self) -> None:
        """Nothing to release; the contents stay readable (idempotent)."""
