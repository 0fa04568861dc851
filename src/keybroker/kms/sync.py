"""A blocking facade over any async :class:`~keybroker.kms.base.KMS`, for scripts.

``SyncKMS`` owns one event loop running in a private daemon thread; each call submits a
coroutine to it and waits.  One long-lived loop (rather than ``asyncio.run`` per call) keeps SDK
clients and connection pools bound to a single loop, and it is safe to call from any number of
threads at once.  It must not be called from inside its own loop (that would deadlock; it raises
``RuntimeError`` instead).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from keybroker.kms.base import KMS

__all__ = ["SyncKMS"]

T = TypeVar("T")


class SyncKMS:
    """Blocking ``get_dek`` / ``close`` over an async KMS.  Use as a context manager."""

    def __init__(self, kms: KMS) -> None:
        self._kms = kms
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="keybroker-kms", daemon=True
        )
        self._thread.start()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_uris(cls, *, kms_uri: str, storage_uri: str | None = None, **options: Any) -> Self:
        """``SyncKMS(keybroker.kms.from_uris(...))``.  Raises what ``from_uris`` raises."""
        from keybroker.kms import from_uris  # the package imports this module's siblings

        return cls(from_uris(kms_uri=kms_uri, storage_uri=storage_uri, **options))

    @property
    def kms(self) -> KMS:
        return self._kms

    def get_dek(self, dek_id: str, dek_size: int, *, timeout: float | None = None) -> bytes:
        """The DEK, blocking.  Raises what ``KMS.get_dek`` raises, ``TimeoutError`` after
        ``timeout`` seconds, ``RuntimeError`` once closed."""
        return self._call(self._kms.get_dek(dek_id, dek_size), timeout)

    def close(self) -> None:
        """Close the KMS, stop the loop and join its thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._submit(self._kms.close(), None)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this SyncKMS is closed")
        return self._submit(coro, timeout)

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncKMS cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncKMS({self._kms!r})"
