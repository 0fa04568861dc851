"""The replay cache shared by worker processes: a UNIX-socket server and its clients.

With several worker processes the supervisor runs one :class:`SharedReplayServer` (holding a
:class:`~keybroker.replay.cache.MemoryReplayCache`) and each worker asks it through a
:class:`SharedReplayClient`, so a signature is accepted once per machine.

Wire format (one persistent connection per worker event loop, pipelined; the answers come
back in request order)::

    request  = key (32 bytes) || ttl in milliseconds (uint32, big endian, 1 .. MAX_TTL_MS)
    response = 0x01 (first use) | 0x00 (replay)

    release  = key (32 bytes) || 0 (uint32): forget the key (the request never reached the
               upstream); response = 0x01 (it was recorded) | 0x00 (it was not)

A request with an invalid TTL closes the connection.  Keys are never logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import stat
import struct
import threading
from collections import deque
from typing import TYPE_CHECKING, cast

from keybroker.replay.base import MAX_TTL_SECONDS, ReplayCacheUnavailable, check_key, ttl_ms
from keybroker.replay.cache import MemoryReplayCache

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["SharedReplayClient", "SharedReplayServer"]

log = logging.getLogger("keybroker.replay")

_MAX_TTL_MS = MAX_TTL_SECONDS * 1000
_FRAME = struct.Struct(">32sI")
_FIRST, _REPLAY = b"\x01", b"\x00"


class _ServerProtocol(asyncio.Protocol):
    """One worker's connection: decode whole frames, answer each batch with one write."""

    def __init__(self, cache: MemoryReplayCache, live: set[_ServerProtocol]) -> None:
        self._cache, self._live = cache, live
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's stream transports are not asyncio.Transport subclasses, only look-alikes
        self._transport = cast(asyncio.Transport, transport)
        self._live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._live.discard(self)

    # A worker that stops reading its answers must not make the server buffer without bound.
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        whole = len(buf) - len(buf) % _FRAME.size
        if whole:
            frames = bytes(buf[:whole])
            del buf[:whole]
            self._answer(frames)

    def _answer(self, frames: bytes) -> None:
        out = bytearray()
        for key, millis in _FRAME.iter_unpack(frames):
            if millis == 0:
                out += _FIRST if self._cache.forget(key) else _REPLAY
                continue
            if millis > _MAX_TTL_MS:
                log.warning("shared replay cache: bad request; closing the connection")
                self.close(out)
                return
            out += _FIRST if self._cache.record(key, millis / 1000) else _REPLAY
        assert self._transport is not None
        self._transport.write(out)

    def close(self, last: bytes | bytearray = b"") -> None:
        if self._transport is not None:
            if last:
                self._transport.write(last)
            self._transport.close()


def _refuse_live_socket(path: str) -> None:
    """A socket file another server still listens on must not be stolen (asyncio would
    unlink it); a stale one is removed by asyncio."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ValueError(f"replay socket path exists and is not a socket: {path}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
            except OSError:
                return
        raise ValueError(f"another replay server is listening on {path}")


class SharedReplayServer:
    """The supervisor's side of the shared ``memory`` cache: a UNIX-socket server holding a
    :class:`MemoryReplayCache`.  Start it before the workers, in a loop (``await start()``) or
    in a thread of its own (``start_thread()``).  The socket is made owner-only (0600); put it
    in a private directory.

    ``start`` raises ``ValueError`` if ``path`` is a non-socket file or a live server's
    socket, ``OSError`` if it cannot bind.
    """

    def __init__(self, path: str, cache: MemoryReplayCache | None = None) -> None:
        self.path = path
        self.cache = cache if cache is not None else MemoryReplayCache()
        self._server: asyncio.AbstractServer | None = None
        self._live: set[_ServerProtocol] = set()
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        _refuse_live_socket(self.path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _ServerProtocol(self.cache, self._live), self.path
        )
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for proto in list(self._live):
            proto.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def __aenter__(self) -> SharedReplayServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def start_thread(self) -> None:
        """Serve from a daemon thread with its own event loop (callable from inside a running
        loop too); returns once listening.  Raises what :meth:`start` raises."""
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name="keybroker-replay", daemon=True
        )
        self._thread.start()
        try:
            self._thread_loop = started.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise

    def stop_thread(self) -> None:
        """Stop the thread started by :meth:`start_thread`; the socket is removed."""
        loop, thread = self._thread_loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread_loop = self._thread = None

    def _thread_main(self, started: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # the "fast" extra is optional
            loop = asyncio.new_event_loop()
        try:
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(loop)
            loop.run_forever()
            loop.run_until_complete(self.close())
        finally:
            loop.close()


class _ClientProtocol(asyncio.Protocol):
    """Answers arrive in request order: each byte settles the oldest pending future."""

    def __init__(self) -> None:
        self.pending: deque[asyncio.Future[bool]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._out = bytearray()  # frames of this loop iteration, sent together

    def send(self, frame: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += frame

    def _flush(self) -> None:
        out, self._out = bytes(self._out), bytearray()
        if self.transport is not None and not self.lost:
            self.transport.write(out)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: a look-alike

    def data_received(self, data: bytes) -> None:
        if len(data) > len(self.pending):
            log.warning("shared replay cache: unexpected answer; reconnecting")
            self.abort()
            return
        for answer in data:
            fut = self.pending.popleft()
            if not fut.done():  # a timed-out caller has gone
                fut.set_result(answer == 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(ReplayCacheUnavailable())

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


def _expire(fut: asyncio.Future[bool], proto: _ClientProtocol) -> None:
    """No answer in time: a stuck server; start afresh on the next call."""
    if not fut.done():
        fut.set_exception(ReplayCacheUnavailable())
        proto.abort()


class SharedReplayClient:
    """A worker's side of the shared ``memory`` cache (see the module docstring for the wire
    format).  Connects lazily, one connection per event loop, reconnects after a failure;
    a call that cannot be answered within ``timeout`` seconds raises
    :class:`ReplayCacheUnavailable` (a request in flight when the connection drops is not
    retried: its key may already be recorded)."""

    def __init__(self, path: str, *, timeout: float = 1.0) -> None:
        self.path = path
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proto: _ClientProtocol | None = None
        self._lock: asyncio.Lock | None = None

    async def first_use(self, key: bytes, ttl: float) -> bool:
        """See :meth:`ReplayCache.first_use`."""
        return await self._ask(_FRAME.pack(check_key(key), ttl_ms(ttl)))

    async def release(self, key: bytes) -> None:
        """See :meth:`ReplayCache.release`."""
        await self._ask(_FRAME.pack(check_key(key), 0))

    async def _ask(self, frame: bytes) -> bool:
        proto = await self._connection()
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        proto.pending.append(fut)
        proto.send(frame)
        timer = asyncio.get_running_loop().call_later(self._timeout, _expire, fut, proto)
        try:
            return await fut
        finally:
            timer.cancel()

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None

    async def _connection(self) -> _ClientProtocol:
        proto, loop = self._proto, asyncio.get_running_loop()
        if proto is not None and not proto.lost and self._loop is loop:
            return proto
        if self._loop is not loop or self._lock is None:
            self._drop_other_loop_connection()
            self._loop, self._lock, self._proto = loop, asyncio.Lock(), None
        async with self._lock:
            if self._proto is None or self._proto.lost:
                self._proto = await self._connect(loop)
            return self._proto

    def _drop_other_loop_connection(self) -> None:
        """A connection belongs to the loop that made it: close it there, if that loop lives."""
        old, transport = self._loop, self._proto.transport if self._proto else None
        if old is not None and transport is not None and not old.is_closed():
            with contextlib.suppress(RuntimeError):
                old.call_soon_threadsafe(transport.close)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _ClientProtocol:
        try:
            async with asyncio.timeout(self._timeout):
                _, proto = await loop.create_unix_connection(_ClientProtocol, self.path)
        except (OSError, TimeoutError) as exc:
            log.warning("shared replay cache unreachable: %s", type(exc).__name__)
            raise ReplayCacheUnavailable() from exc
        return proto
