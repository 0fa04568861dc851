"""The key store behind both APIs: DEKs by id from a KMS, with tombstones for deleted ids.

Ids are the caller's; the KMS sees ``key-`` + id (Constellation's key service does the same,
so an id names the same DEK over gRPC, over HTTP and through
``keybroker.kms.from_uris(...).get_dek("key-" + id, n)``).

**Tombstones.**  Deleting an id writes a small marker object named
``keybroker-tombstones/key-<id>`` in the same storage, *then* removes the wrapped DEK.  The
marker lives as long as the storage does, so the deletion survives restarts and is seen by
every proxy sharing the storage.  While it exists, any get/create/generate/unwrap/rewrap of the
id is refused (``KeyDeleted``, 409): a DEK that was deleted on purpose is never silently
replaced by a fresh one that would not decrypt the old data.  ``recreate`` removes the marker
(and any DEK left by a crash between the two steps) and creates a new DEK.  The marker is
written first, so a crash in between leaves the id deleted, never half-deleted.  Tombstones
are outside the ``key-`` namespace: listing DEKs never shows them.

A cluster KMS stores nothing (every DEK is derived): ids always exist, and delete, list and
the wrapping operations are :class:`NotSupported`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from keybroker.errors import ProxyError, ServiceUnavailable
from keybroker.keyservice.errors import InvalidArgument, KeyDeleted, KeyNotFound, NotSupported
from keybroker.kms.base import KMS
from keybroker.kms.cluster import MAX_DEK_SIZE
from keybroker.kms.envelope import is_legacy, legacy_refused, open_dek, seal_dek
from keybroker.kms.errors import BackendError, DEKExists, DEKNotFound, IntegrityError
from keybroker.kms.external import ExternalKMS
from keybroker.kms.rewrap import inspect_blob
from keybroker.kms.storage import MAX_KEY_ID_BYTES, validate_key_id

__all__ = ["ID_PREFIX", "MAX_ID_BYTES", "TOMBSTONE_PREFIX", "KeyStore"]

log = logging.getLogger("keybroker.keyservice")

#: What Constellation's key service puts before every id it hands to the KMS.
ID_PREFIX = "key-"
#: Where tombstones live in the storage (outside the ``key-`` namespace).
TOMBSTONE_PREFIX = "keybroker-tombstones/"
#: Longest caller id: the tombstone's name must still be a valid storage id.
MAX_ID_BYTES = MAX_KEY_ID_BYTES - len(TOMBSTONE_PREFIX) - len(ID_PREFIX)
_MAX_CLUSTER_ID_BYTES = 1024 - len(ID_PREFIX)

T = TypeVar("T")


class KeyStore:
    """DEKs by caller id; see the module docstring.  ``max_dek_size`` bounds sizes (bytes);
    ``clock`` (seconds since the epoch) stamps tombstones."""

    def __init__(
        self, kms: KMS, *, max_dek_size: int, clock: Callable[[], float] = time.time
    ) -> None:
        """Raises ``ValueError`` for a ``max_dek_size`` outside 1..8160."""
        if not 1 <= max_dek_size <= MAX_DEK_SIZE:
            raise ValueError(f"max_dek_size must be 1..{MAX_DEK_SIZE}")
        self.kms = kms
        self.max_dek_size = max_dek_size
        self._clock = clock

    @property
    def stores(self) -> bool:
        """Does the KMS store DEKs (an external KMS), rather than derive them?"""
        return isinstance(self.kms, ExternalKMS)

    # ------------------------------------------------------------ argument checks

    def check_id(self, key_id: object) -> str:
        """Return ``key_id`` if the service accepts it.  Raises ``InvalidArgument``."""
        if not isinstance(key_id, str) or not key_id:
            raise InvalidArgument("a key id is required")
        try:
            size = len(key_id.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidArgument("the key id must be valid unicode") from None
        limit = MAX_ID_BYTES if self.stores else _MAX_CLUSTER_ID_BYTES
        if size > limit:
            raise InvalidArgument(f"the key id must be at most {limit} UTF-8 bytes")
        if self.stores:
            try:
                validate_key_id(ID_PREFIX + key_id)
            except ValueError as exc:
                raise InvalidArgument(str(exc).replace("key id", "the key id", 1)) from None
        return key_id

    def check_size(self, size: object) -> int:
        """Return ``size`` if it is an int in 1..max_dek_size.  Raises ``InvalidArgument``."""
        if isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= self.max_dek_size:
            return size
        raise InvalidArgument(f"size must be an integer from 1 to {self.max_dek_size} bytes")

    # ------------------------------------------------------------ DEKs by id

    async def lookup(self, key_id: str, size: int) -> bytes | None:
        """The DEK of an existing id, or ``None`` if there is none.  Raises ``KeyDeleted``,
        ``InvalidArgument`` (stored with another size), ``ServiceUnavailable``, ``ProxyError``
        (a stored blob that does not open)."""
        if not isinstance(self.kms, ExternalKMS):
            return await _guard(self.kms.get_dek(ID_PREFIX + key_id, size))
        kms = self.kms
        await self._refuse_deleted(key_id)
        blob = await _guard(_get_or_none(kms, ID_PREFIX + key_id))
        if blob is None:
            return None
        await _guard(_check_stored_size(key_id, blob, size, legacy=kms.reads_legacy))
        opened = open_dek(
            kms.wrapper,
            ID_PREFIX + key_id,
            size,
            blob,
            legacy=kms.reads_legacy,
            trusted_store=kms.trusted_store,
        )
        return await _guard(opened)

    async def create(self, key_id: str, size: int) -> bytes:
        """The DEK of ``key_id``, created if absent (a concurrent creator's DEK wins, for both).
        Raises like :meth:`lookup`."""
        await self._refuse_deleted(key_id)
        return await _guard(self.kms.get_dek(ID_PREFIX + key_id, size))

    async def revive(self, key_id: str) -> bool:
        """Remove ``key_id``'s tombstone and any DEK left behind, so :meth:`create` makes a new
        one.  Returns whether there was a tombstone.  Raises ``ServiceUnavailable``."""
        kms = self._external("recreate")
        if not await _guard(_exists(kms, _tombstone(key_id))):
            return False
        await _guard(_delete_if_present(kms, ID_PREFIX + key_id))
        await _guard(_delete_if_present(kms, _tombstone(key_id)))
        return True

    async def delete(self, key_id: str) -> None:
        """Tombstone ``key_id``, then remove its DEK.  Raises ``KeyNotFound`` (no such id),
        ``KeyDeleted`` (already deleted), ``NotSupported``, ``ServiceUnavailable``."""
        kms = self._external("delete")
        await self._refuse_deleted(key_id)
        if not await _guard(_exists(kms, ID_PREFIX + key_id)):
            raise KeyNotFound(f"no key with id {_show(key_id)}")
        try:
            await _guard(kms.storage.put(_tombstone(key_id), self._tombstone_body()))
        except DEKExists:  # a concurrent delete won
            raise KeyDeleted(f"the key {_show(key_id)} was deleted") from None
        await _guard(_delete_if_present(kms, ID_PREFIX + key_id))

    async def list(self, prefix: str) -> list[str]:
        """Live ids starting with ``prefix``, sorted.  Raises ``NotSupported``,
        ``ServiceUnavailable``."""
        kms = self._external("list")
        stored = await _guard(_list(kms, ID_PREFIX + prefix))
        dead = set(await _guard(_list(kms, TOMBSTONE_PREFIX + ID_PREFIX + prefix)))
        return [i.removeprefix(ID_PREFIX) for i in stored if TOMBSTONE_PREFIX + i not in dead]

    # ------------------------------------------------------------ caller-held blobs

    async def generate(self, key_id: str, size: int) -> tuple[bytes, bytes]:
        """A fresh DEK and its wrapped blob, bound to ``key_id``; nothing is stored.
        Raises ``NotSupported``, ``KeyDeleted``, ``ServiceUnavailable``."""
        kms = self._external("generate")
        await self._refuse_deleted(key_id)
        await _guard(kms.open())
        dek = os.urandom(size)
        blob = await _guard(seal_dek(kms.wrapper, ID_PREFIX + key_id, dek))
        return dek, blob

    async def unwrap(self, key_id: str, blob: bytes, size: int | None) -> bytes:
        """The DEK in a blob bound to ``key_id``: our envelope only — a Constellation-format
        blob from a caller is refused whatever ``LegacyBlobs`` says, since nothing in it says
        which id it belongs to.  Raises ``InvalidArgument`` (a blob that does not open for this
        id, or has another size), ``NotSupported``, ``KeyDeleted``, ``ServiceUnavailable``."""
        kms = self._external("unwrap")
        await self._refuse_deleted(key_id)
        await _guard(kms.open())
        actual = _blob_size(key_id, blob)
        if size is not None and size != actual:
            raise InvalidArgument(f"the blob holds a {actual}-byte key, not {size} bytes")
        # TrustedStore also covers the callers' stores: their unsigned envelopes of a KEK that
        # cannot bind (made before signing existed) open, and ``rewrap`` signs them
        opened = open_dek(
            kms.wrapper, ID_PREFIX + key_id, actual, blob, trusted_store=kms.trusted_store
        )
        return await _guard(opened, unopenable=_unopenable)

    async def rewrap(self, key_id: str, blob: bytes) -> bytes:
        """``blob`` sealed anew under the newest KEK version (our format, bound to the id).
        Raises like :meth:`unwrap`."""
        dek = await self.unwrap(key_id, blob, None)
        kms = self._external("rewrap")
        return await _guard(seal_dek(kms.wrapper, ID_PREFIX + key_id, dek))

    async def close(self) -> None:
        """Close the KMS; idempotent."""
        await self.kms.close()

    # ------------------------------------------------------------ helpers

    def _external(self, operation: str) -> ExternalKMS:
        if not isinstance(self.kms, ExternalKMS):
            raise NotSupported(
                f"'{operation}' needs a KMS that stores keys; cluster-kms derives every key"
            )
        return self.kms

    async def _refuse_deleted(self, key_id: str) -> None:
        if not isinstance(self.kms, ExternalKMS):
            return
        if await _guard(_exists(self.kms, _tombstone(key_id))):
            raise KeyDeleted(
                f"the key {_show(key_id)} was deleted (ask with recreate=true for a new key)"
            )

    def _tombstone_body(self) -> bytes:
        when = datetime.fromtimestamp(self._clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps({"keybroker_tombstone": 1, "deleted_at": when}).encode()


def _tombstone(key_id: str) -> str:
    return TOMBSTONE_PREFIX + ID_PREFIX + key_id


def _show(key_id: str) -> str:
    return repr(key_id if len(key_id) <= 80 else key_id[:77] + "...")


def _unopenable() -> InvalidArgument:
    return InvalidArgument(
        "the blob does not open for this key id "
        "(corrupted, bound to another id, or sealed under another key)"
    )


def _blob_size(key_id: str, blob: bytes) -> int:
    """The DEK size of a caller's blob, which must be our (id-bound) envelope."""
    if is_legacy(blob):
        raise InvalidArgument(
            "the blob is in Constellation's format, which is not bound to an id: only "
            "keybroker envelopes are unwrapped or rewrapped from a request"
        )
    try:
        return inspect_blob(blob, ID_PREFIX + key_id)[2]
    except IntegrityError:
        raise _unopenable() from None


async def _check_stored_size(key_id: str, blob: bytes, size: int, *, legacy: bool) -> None:
    if is_legacy(blob) and not legacy:
        raise legacy_refused(ID_PREFIX + key_id)
    stored = inspect_blob(blob, ID_PREFIX + key_id)[2]
    if stored != size:
        raise InvalidArgument(f"the key {_show(key_id)} is {stored} bytes, not {size}")


async def _get_or_none(kms: ExternalKMS, name: str) -> bytes | None:
    await kms.open()
    try:
        return await kms.storage.get(name)
    except DEKNotFound:
        return None


async def _exists(kms: ExternalKMS, name: str) -> bool:
    return await _get_or_none(kms, name) is not None


async def _delete_if_present(kms: ExternalKMS, name: str) -> None:
    with contextlib.suppress(DEKNotFound):
        await kms.storage.delete(name)


async def _list(kms: ExternalKMS, prefix: str) -> list[str]:
    await kms.open()
    return await kms.storage.list(prefix)


async def _guard(call: Awaitable[T], *, unopenable: Callable[[], ProxyError] | None = None) -> T:
    """Await a KMS call; its failures become answers: a service that is down is 503, a
    stored blob that does not open is 500 (logged here with its reason) — or ``unopenable()``
    for a blob the caller sent — and misuse is 400."""
    try:
        return await call
    except (ProxyError, DEKExists):
        raise
    except BackendError as exc:
        log.error("key store unavailable: %s", exc)
        raise ServiceUnavailable("the key store is unavailable; see the proxy log") from None
    except IntegrityError as exc:
        if unopenable is not None:
            raise unopenable() from None
        log.error("stored key does not open: %s", exc)
        raise ProxyError("the stored key cannot be opened; see the proxy log") from None
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(str(exc)) from None
