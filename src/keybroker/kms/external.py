"""The external KMS: random DEKs, wrapped by a cloud KEK, stored create-only.

``get_dek(id, size)``: validate the id and size; read the blob; if there is none, generate a DEK
with ``os.urandom``, seal it (:mod:`keybroker.kms.envelope`) and ``put`` it create-only.  If
another writer got there first (``DEKExists``), read back *their* blob and return that DEK, so
every caller ends up with the one stored key (Constellation's last-write-wins race loses keys).
"""

from __future__ import annotations

import asyncio
import os

from keybroker.kms.base import NO_OBSERVER, KeyWrapper, KMSObserver, Openable
from keybroker.kms.binding import binds_aad, check_binding
from keybroker.kms.cluster import check_dek_size
from keybroker.kms.envelope import LEGACY_SETTINGS, LegacyBlobs, WriteFormat, open_dek, seal_dek
from keybroker.kms.errors import DEKExists, DEKNotFound, KMSConfigError
from keybroker.kms.storage import validate_key_id
from keybroker.kms.storage.base import Storage

__all__ = ["ExternalKMS"]

_FORMATS = ("keybroker", "constellation")


class ExternalKMS:
    """DEKs wrapped by ``wrapper`` and kept in ``storage``; see the module docstring.

    ``write_format`` picks how new DEKs are stored: ``"keybroker"`` (default, bound to id, size
    and KEK) or ``"constellation"`` (readable by Constellation).  ``legacy_blobs`` is the
    migration setting: ``"off"`` (default) reads only our envelope; ``"read"`` also reads
    Constellation's blobs stored under the id asked for (nothing binds those to their id: a
    blob copied from another id opens).  Writing Constellation's format implies ``"read"``.
    ``trusted_store`` states that nobody else can write the store: needed for a wrapper that
    can neither bind associated data nor sign (:mod:`keybroker.kms.binding`).  ``observer``
    is told of every ``get_dek`` (:class:`~keybroker.kms.base.KMSObserver`).
    """

    def __init__(
        self,
        wrapper: KeyWrapper,
        storage: Storage,
        *,
        write_format: WriteFormat = "keybroker",
        legacy_blobs: LegacyBlobs = "off",
        trusted_store: bool = False,
        observer: KMSObserver = NO_OBSERVER,
    ) -> None:
        """Raises ``ValueError`` for an unknown ``write_format`` or ``legacy_blobs``,
        ``KMSConfigError`` for a wrapper that can neither bind nor sign, or one that cannot
        bind writing Constellation's format (which carries no signature), unless
        ``trusted_store``."""
        check_binding(wrapper, trusted_store=trusted_store)
        if write_format not in _FORMATS:
            raise ValueError("write_format must be 'keybroker' or 'constellation'")
        if write_format == "constellation" and not binds_aad(wrapper) and not trusted_store:
            raise KMSConfigError(
                f"kms://{wrapper.name} cannot bind a wrapped key to its id, and Constellation's "
                "format cannot carry a signature, so anyone who can write the store could plant "
                "a key of their own: write that format only to a trusted store "
                "(trusted_store=True, trustedStore=true on the storage URI)"
            )
        if legacy_blobs not in LEGACY_SETTINGS:
            raise ValueError("legacy_blobs must be 'off' or 'read'")
        self._wrapper = wrapper
        self._storage = storage
        self._write_format: WriteFormat = write_format
        self._legacy = legacy_blobs == "read" or write_format == "constellation"
        self._trusted = trusted_store is True
        self._observer = observer
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def wrapper(self) -> KeyWrapper:
        return self._wrapper

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def trusted_store(self) -> bool:
        """Did the operator state that nobody else can write the store (see
        :mod:`keybroker.kms.binding`)?"""
        return self._trusted

    @property
    def reads_legacy(self) -> bool:
        """Are Constellation-format blobs read from the store (the migration setting)?"""
        return self._legacy

    async def open(self) -> None:
        """Run the backends' network set-up once (the wrapper's before the storage's, so a bad
        key is reported before a bucket is created).  Raises ``BackendError``,
        ``KMSConfigError``."""
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                if isinstance(self._wrapper, Openable):
                    await self._wrapper.open()
                if isinstance(self._storage, Openable):
                    await self._storage.open()
                self._opened = True

    async def get_dek(self, dek_id: str, dek_size: int) -> bytes:
        """The DEK for ``dek_id``, created on first use.  Raises ``TypeError``/``ValueError``
        (bad id or size, before any I/O), ``IntegrityError`` (a stored blob that does not
        authenticate or has another size), ``BackendError``."""
        validate_key_id(dek_id)
        check_dek_size(dek_size)
        if self._closed:
            raise RuntimeError("this KMS is closed")
        await self.open()
        backend, observe = self._wrapper.name, self._observer.operation
        try:
            try:
                blob = await self._storage.get(dek_id)
            except DEKNotFound:
                dek = await self._create(dek_id, dek_size)
                observe(backend, "create", "ok")
                return dek
            dek = await self._open(dek_id, dek_size, blob)
        except Exception as exc:
            observe(backend, "get", type(exc).__name__)
            raise
        observe(backend, "get", "ok")
        return dek

    async def _create(self, dek_id: str, dek_size: int) -> bytes:
        dek = os.urandom(dek_size)
        blob = await seal_dek(self._wrapper, dek_id, dek, fmt=self._write_format)
        try:
            await self._storage.put(dek_id, blob)
        except DEKExists:
            # Lost the race: the winner's DEK is the one every caller must use.
            stored = await self._storage.get(dek_id)
            return await self._open(dek_id, dek_size, stored)
        return dek

    async def _open(self, dek_id: str, dek_size: int, blob: bytes) -> bytes:
        """A blob read from the store under ``dek_id``, opened as this store's settings say."""
        return await open_dek(
            self._wrapper, dek_id, dek_size, blob, legacy=self._legacy, trusted_store=self._trusted
        )

    async def close(self) -> None:
        """Close the wrapper and the storage; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._wrapper.close()
        finally:
            await self._storage.close()

    def __repr__(self) -> str:
        return f"ExternalKMS({self._wrapper!r}, {self._storage!r})"
