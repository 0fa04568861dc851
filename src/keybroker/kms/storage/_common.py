"""What the object-store backends (S3, GCS, Azure Blob) share around their synchronous SDKs.

:class:`ThreadedStorage` is the async face of a backend whose SDK blocks: every call runs in a
worker thread, after the bucket (or container) has been made ready once, under a lock; a
closed storage refuses further calls.  A backend supplies the synchronous halves
(``_get``, ``_put``, ``_delete``, ``_list``, ``_make_ready``, ``_close_sync``).

:func:`translate` turns a backend's SDK errors into the storage errors: the absent and
already-present cases into ``DEKNotFound`` / ``DEKExists`` (whose messages every backend
shares), anything else into the ``BackendError`` the backend describes.

:func:`read_bounded` and :class:`BoundedSink` read a stored object in pieces and stop past
``MAX_BLOB_BYTES`` (:func:`too_large`): an object planted at a DEK id is never read whole.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from keybroker.kms.errors import BackendError, DEKExists, DEKNotFound, IntegrityError
from keybroker.kms.storage import MAX_BLOB_BYTES, validate_blob, validate_key_id, validate_prefix
from keybroker.kms.uri import ParsedURI

__all__ = [
    "BoundedSink",
    "ErrorTypes",
    "Matcher",
    "ThreadedStorage",
    "already_stored",
    "check_uri",
    "not_stored",
    "read_bounded",
    "sorted_names",
    "too_large",
    "translate",
]

T = TypeVar("T")
ErrorTypes = tuple[type[Exception], ...]
# Which SDK errors mean "absent" / "present": exception classes, or a test of the exception
# for SDKs that tell them apart by an error code.
Matcher = ErrorTypes | Callable[[BaseException], bool]


def check_uri(parsed: ParsedURI, *required: str) -> None:
    """Check a ``storage://`` URI that takes ``required`` parameters and an optional
    ``endpoint``.  Raises ``KMSConfigError`` naming every unknown, missing or empty one."""
    parsed.check_known(*required, "endpoint")
    parsed.require(*required)
    parsed.optional("endpoint")


def not_stored(key_id: str) -> DEKNotFound:
    """The error for an absent key id."""
    return DEKNotFound(f"no stored DEK for id {key_id!r}")


def already_stored(key_id: str) -> DEKExists:
    """The error for a create-only write to a present key id."""
    return DEKExists(f"a DEK is already stored for id {key_id!r}")


def too_large(key_id: str) -> IntegrityError:
    """The error for a stored object larger than any blob (read no further than the limit)."""
    return IntegrityError(
        f"stored object for id {key_id!r} is larger than the {MAX_BLOB_BYTES}-byte blob limit:"
        " not a DEK blob (refused without reading it)"
    )


_PIECE = 16 * 1024


def read_bounded(read: Callable[[int], bytes], key_id: str) -> bytes:
    """Everything ``read(n)`` yields until it returns ``b""``, in pieces of at most 16 KiB.
    Raises ``IntegrityError`` (:func:`too_large`) as soon as more than ``MAX_BLOB_BYTES``
    arrived: at most the limit plus one piece is ever read."""
    sink = BoundedSink(key_id)
    while piece := read(_PIECE):
        sink.write(piece)
    return sink.getvalue()


class BoundedSink:
    """A writable file-like object for an SDK that downloads into a stream: keeps at most
    ``MAX_BLOB_BYTES`` and raises ``IntegrityError`` (:func:`too_large`) from the write that
    goes past, which aborts the download."""

    def __init__(self, key_id: str) -> None:
        self._key_id = key_id
        self._pieces: builtins.list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._size > MAX_BLOB_BYTES:
            self._pieces.clear()
            raise too_large(self._key_id)
        self._pieces.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._pieces)


def sorted_names(names: Iterable[str]) -> builtins.list[str]:
    """Every name of a (paginated) listing, sorted; the SDK's iterator fetches the pages."""
    return sorted(str(name) for name in names)


class translate:  # lower case: it reads as a function, ``with translate(...):``
    """A context that raises ``DEKNotFound`` for a ``not_found`` error, ``DEKExists`` for an
    ``exists`` error (both without the SDK's exception, which may echo the request) and
    ``backend(operation, exc)`` from any other of ``errors``; other exceptions pass through.

    A class rather than a generator so that type checkers know it never swallows an
    exception (a ``return`` inside the block needs no unreachable fallback).
    """

    def __init__(
        self,
        operation: str,
        errors: ErrorTypes,
        backend: Callable[[str, Exception], BackendError],
        *,
        key_id: str = "",
        not_found: Matcher = (),
        exists: Matcher = (),
    ) -> None:
        self._operation = operation
        self._errors = errors
        self._backend = backend
        self._key_id = key_id
        self._not_found = not_found
        self._exists = exists

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not isinstance(exc, Exception):
            return
        if _matches(self._not_found, exc):
            raise not_stored(self._key_id) from None
        if _matches(self._exists, exc):
            raise already_stored(self._key_id) from None
        if isinstance(exc, self._errors):
            raise self._backend(self._operation, exc) from exc


def _matches(matcher: Matcher, exc: Exception) -> bool:
    return isinstance(exc, matcher) if isinstance(matcher, tuple) else matcher(exc)


class ThreadedStorage:
    """The async Storage methods over a blocking SDK: validation, then a worker thread.

    Subclasses set ``_service_name`` (as in "S3 storage is closed"), call
    :meth:`_init_threaded` from ``__init__`` and implement the synchronous halves.  Every async
    method raises ``BackendError`` once :meth:`close` has run.
    """

    _service_name: ClassVar[str]
    _ready: bool
    _ready_lock: threading.Lock
    _closed: bool

    def _init_threaded(self) -> None:
        self._ready = False
        self._ready_lock = threading.Lock()
        self._closed = False

    async def open(self) -> None:
        """Create the bucket (container) if it is missing.  Idempotent.  Raises
        ``BackendError``."""
        await asyncio.to_thread(self._ensure_ready)

    async def get(self, key_id: str) -> bytes:
        """The stored bytes.  Raises ``DEKNotFound``, ``BackendError``."""
        return await self._run(self._get, validate_key_id(key_id))

    async def put(self, key_id: str, data: bytes) -> None:
        """Create-only write.  Raises ``DEKExists``, ``BackendError``."""
        await self._run(self._put, validate_key_id(key_id), validate_blob(data))

    async def delete(self, key_id: str) -> None:
        """Remove the object.  Raises ``DEKNotFound``, ``BackendError``."""
        await self._run(self._delete, validate_key_id(key_id))

    async def list(self, prefix: str = "") -> builtins.list[str]:
        """Sorted key ids starting with ``prefix`` (all pages).  Raises ``BackendError``."""
        return await self._run(self._list, validate_prefix(prefix))

    async def close(self) -> None:
        """Release the SDK's connections.  Idempotent."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._close_sync)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise BackendError(f"{self._service_name} storage is closed")
        return await asyncio.to_thread(self._ready_then, fn, *args)

    def _ready_then(self, fn: Callable[..., T], *args: Any) -> T:
        self._ensure_ready()
        return fn(*args)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        # one creator per process; other processes race through the service's own answers
        with self._ready_lock:
            if not self._ready:
                self._make_ready()
                self._ready = True

    # -- the synchronous halves a backend supplies ----------------------------------------

    def _make_ready(self) -> None:
        raise NotImplementedError

    def _close_sync(self) -> None:
        raise NotImplementedError

    def _get(self, key_id: str) -> bytes:
        raise NotImplementedError

    def _put(self, key_id: str, data: bytes) -> None:
        raise NotImplementedError

    def _delete(self, key_id: str) -> None:
        raise NotImplementedError

    def _list(self, prefix: str) -> builtins.list[str]:
        raise NotImplementedError
