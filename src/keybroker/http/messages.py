"""The messages of keybroker's HTTP/1.1 layer: a request as the handler sees it (its body a
bounded stream), and the answers it gives (whole, or streamed with the head held back until the
first body bytes).  The connection that carries them is :mod:`keybroker.http.server`'s."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "REASONS",
    "Body",
    "ClientDisconnected",
    "Connection",
    "FlowControl",
    "Request",
    "Response",
    "StreamResponse",
    "http_date",
    "json_response",
    "wait",
]


class Connection(Protocol):
    """What messages need of the connection that carries them."""

    remote: str | None
    secure: bool
    closing: bool
    paused: bool

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def abort(self) -> None: ...


T = TypeVar("T")

_HIGH_WATER = 512 * 1024  # buffered request body bytes before reading pauses
_LOW_WATER = 128 * 1024
REASONS = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY_STATUS = frozenset({204, 304})


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class ClientDisconnected(ConnectionResetError):
    """The client went away before its request body ended."""


class Body:
    """A request body as it arrives: ``await read(n)`` returns up to ``n`` bytes, ``b""`` at
    the end.  At most ~512 KiB is held: past that the connection stops reading."""

    __slots__ = ("_chunks", "_conn", "_eof", "_exc", "_size", "_waiter")

    def __init__(self, conn: Connection | None) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = conn is None
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._conn = conn

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and self._conn is not None:
            self._conn.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def set_exception(self, exc: BaseException) -> None:
        if not self._eof:
            self._exc = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def complete(self) -> bool:
        """Every byte of the body has arrived (some may still be unread)."""
        return self._eof

    async def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes (``-1``: the next piece as it arrived, at most ~256 KiB);
        ``TimeoutError`` when nothing arrives for ``timeout`` seconds."""
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await wait(self._waiter, timeout, TimeoutError)
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        if 0 <= n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        self._size -= len(chunk)
        if self._size < _LOW_WATER and self._conn is not None:
            self._conn.resume_reading()
        return chunk


async def wait(
    waiter: asyncio.Future[T], timeout: float | None, error: Callable[[], BaseException]
) -> T:
    """``waiter``'s result; after ``timeout`` seconds it fails with ``error()`` instead.  A
    timer only while waiting (no timeout context, no task)."""
    if waiter.done():
        return waiter.result()
    timer = None
    if timeout is not None:
        timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter, error)
    try:
        return await waiter
    finally:
        if timer is not None:
            timer.cancel()


def _expire(waiter: asyncio.Future[Any], error: Callable[[], BaseException]) -> None:
    if not waiter.done():
        waiter.set_exception(error())


class FlowControl(asyncio.Protocol):
    """Both directions of a connection's flow control: ``drain()`` waits while the transport's
    write buffer is over its mark; reading is paused and resumed once each way."""

    transport: asyncio.Transport | None = None
    paused = False
    _drain: asyncio.Future[None] | None = None
    _reading_paused = False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def drain(self) -> None:
        if not self.paused:
            return
        self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def _gone(self) -> bool:
        return False

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self._gone():
            self._reading_paused = False
            self.transport.resume_reading()


def _invalid(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Request:
    """One parsed request: what the proxy's routing, signers and services read of it."""

    __slots__ = (
        "_conn",
        "_continued",
        "_path",
        "bad_header",
        "body_exists",
        "content",
        "content_length",
        "head_size",
        "headers",
        "keep_alive",
        "method",
        "raw_path",
        "remote",
        "secure",
        "version",
    )

    def __init__(
        self,
        conn: Connection,
        method: str,
        raw_path: str,
        raw_headers: tuple[tuple[bytes, bytes], ...],
        version: str,
        keep_alive: bool,
        head_size: int = 0,
    ) -> None:
        self._conn = conn
        #: bytes of the request target and header lines, as the client sent them
        self.head_size = head_size
        #: the first header whose value is not valid UTF-8 (kept as surrogate escapes)
        self.bad_header: str | None = None
        self.method = method
        self.raw_path = raw_path
        headers: CIMultiDict[str] = CIMultiDict()
        chunked = False
        length: int | None = None
        for name, value in raw_headers:
            if value.isascii():
                text = value.decode("ascii")
            else:
                text = value.decode("utf-8", "surrogateescape")
                if self.bad_header is None and max(text) >= "\udc80" and _invalid(text):
                    self.bad_header = name.decode("latin-1")
            headers.add(name.decode("latin-1"), text)
            low = name.lower()
            if low == b"content-length":
                length = int(value)  # llhttp accepted it: digits only, one value
            elif low == b"transfer-encoding":
                chunked = True
        self.headers = CIMultiDictProxy(headers)
        self.content_length = None if chunked else length
        self.body_exists = chunked or bool(length)
        self.content = Body(conn if self.body_exists else None)
        self.version = version
        self.keep_alive = keep_alive
        self.remote = conn.remote
        self.secure = conn.secure
        self._path: str | None = None
        self._continued = False

    @property
    def path(self) -> str:
        """The percent-decoded path (no query)."""
        if self._path is None:
            self._path = unquote(self.raw_path.partition("?")[0], errors="surrogateescape")
        return self._path

    @property
    def query_string(self) -> str:
        return self.raw_path.partition("?")[2]

    def send_continue(self) -> None:
        """Answer ``Expect: 100-continue`` once, when the body is really wanted."""
        if self._continued:
            return
        self._continued = True
        expect = self.headers.get("expect", "")
        if expect.lower() == "100-continue" and not self.content.complete:
            self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def abort(self) -> None:
        """Cut the connection (an answer already under way cannot be finished)."""
        self._conn.abort()


class StreamResponse:
    """An answer written in parts: ``await prepare(request)``, ``await write(data)``...,
    ``await write_eof()``.  The head is held back and sent with the first body bytes."""

    def __init__(
        self,
        *,
        status: int = 200,
        reason: str | None = None,
        headers: CIMultiDict[str] | dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers: CIMultiDict[str] = CIMultiDict(headers or {})
        self.content_length: int | None = None
        self.keep_alive = True
        self._conn: Connection | None = None
        self._pending = b""
        self._chunked = False
        self._no_body = False
        self._done = False

    @property
    def prepared(self) -> bool:
        return self._conn is not None

    def force_close(self) -> None:
        self.keep_alive = False

    async def prepare(self, request: Request) -> None:
        if self._conn is not None:
            return
        conn = self._conn = request._conn
        # a body not all received by now cannot be skipped to reach the next request
        complete = request.content.complete
        self.keep_alive = self.keep_alive and request.keep_alive and complete and not conn.closing
        status = self.status
        self._no_body = request.method == "HEAD" or status in _NO_BODY_STATUS or status < 200
        headers = self.headers
        headers.popall("Transfer-Encoding", None)
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        elif not self._no_body:
            headers.popall("Content-Length", None)
            if request.version == "1.1":
                self._chunked = True
                headers["Transfer-Encoding"] = "chunked"
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        if "Date" not in headers:
            headers["Date"] = http_date()
        if not self.keep_alive:
            headers["Connection"] = "close"
        elif request.version != "1.1":
            headers["Connection"] = "keep-alive"
        lines = [f"HTTP/1.1 {status} {self.reason or REASONS.get(status, 'Unknown')}\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        self._pending = "".join(lines).encode("utf-8", "surrogateescape")

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            raise RuntimeError("write() before prepare()")
        if not data or self._no_body:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self._pending:
            data, self._pending = self._pending + data, b""
        conn.write(data)
        if conn.paused:
            await conn.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        if self._done:
            return
        if data:
            await self.write(data)
        conn = self._conn
        if conn is None:
            raise RuntimeError("write_eof() before prepare()")
        self._done = True
        tail = b"0\r\n\r\n" if self._chunked else b""
        if self._pending or tail:
            conn.write(self._pending + tail)
            self._pending = b""
        if conn.paused:
            await conn.drain()


class Response(StreamResponse):
    """An answer with its whole body."""

    def __init__(
        self,
        *,
        body: bytes | None = None,
        text: str | None = None,
        status: int = 200,
        reason: str | None = None,
        headers: CIMultiDict[str] | dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        if text is not None:
            body = text.encode("utf-8")
            content_type = (content_type or "text/plain") + "; charset=utf-8"
        self.body = body or b""
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        self.content_length = len(self.body)

    async def send(self, request: Request) -> None:
        await self.prepare(request)
        await self.write_eof(self.body)


def json_response(
    data: Any, *, status: int = 200, headers: CIMultiDict[str] | dict[str, str] | None = None
) -> Response:
    return Response(
        text=json.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
    )
