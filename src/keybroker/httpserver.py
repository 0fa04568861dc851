"""The proxy's HTTP/1.1 server: an asyncio protocol over the llhttp parser (``httptools``).

It does only what a proxy in the path of every API call needs, with as little work per request
as possible: requests are parsed by llhttp (strict: no request smuggling through
``Content-Length`` + ``Transfer-Encoding``, no bare CR/LF), bodies are handed to the handler as
a bounded stream (reading pauses past 512 KiB buffered), answers are written with their head
and first body bytes in one send.  Keep-alive and pipelining as HTTP/1.1 wants; a request whose
body was not read to its end closes the connection after the answer.

A handler gets a :class:`Request` and returns a :class:`Response` (sent whole) or a
:class:`StreamResponse` it has already prepared and written to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from keybroker.errors import MalformedRequest

__all__ = [
    "Body",
    "ClientDisconnected",
    "HttpServer",
    "Request",
    "Response",
    "StreamResponse",
    "json_response",
]

log = logging.getLogger("keybroker.server")

Handler = Callable[["Request"], Awaitable["StreamResponse"]]

_HIGH_WATER = 512 * 1024  # buffered request body bytes before reading pauses
_LOW_WATER = 128 * 1024
_WRITE_HIGH = 1024 * 1024
_MAX_PIPELINED = 16  # parsed requests waiting behind the one being answered
_IDLE_TIMEOUT = 75.0  # a keep-alive connection with no request is closed after this
_REASONS = {s.value: s.phrase for s in HTTPStatus}
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

    __slots__ = ("_chunks", "_conn", "_eof", "_exc", "_size", "_waiter", "received")

    def __init__(self, conn: _Connection | None) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = conn is None
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._conn = conn
        self.received = 0

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self.received += len(data)
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

    def is_eof(self) -> bool:
        return self._eof and not self._chunks

    async def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes (``-1``: the next piece as it arrived, at most ~256 KiB);
        ``TimeoutError`` when nothing arrives for ``timeout`` seconds."""
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunk = self._chunks.popleft()
        if 0 <= n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        self._size -= len(chunk)
        if self._size < _LOW_WATER and self._conn is not None:
            self._conn.resume_reading()
        return chunk


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


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
        "raw_headers",
        "raw_path",
        "remote",
        "secure",
        "version",
    )

    def __init__(
        self,
        conn: _Connection,
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
        self.raw_headers = raw_headers
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
        self._conn: _Connection | None = None
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
        lines = [f"HTTP/1.1 {status} {self.reason or _REASONS.get(status, 'Unknown')}\r\n"]
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


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.secure = server.secure
        self.closing = False
        self.paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._current: Request | None = None
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        # one deadline at a time (idle keep-alive, or the head of a request begun), checked by
        # the server's sweep: no timer to make and cancel for every request
        self.deadline: float | None = None
        self._on_deadline: Callable[[], None] | None = None
        self._upgrade = False

    # ---- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # large bodies move in big steps: fewer pause/resume round trips than the default 64 KiB
        transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_HIGH // 4)  # type: ignore[attr-defined]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.remote = str(peer[0])
        self.server.connections.add(self)
        self._arm(_IDLE_TIMEOUT, self._idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        self._disarm()
        if self._current is not None:
            self._current.content.set_exception(ClientDisconnected("the client disconnected"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("the client disconnected"))
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade = True  # answered as an ordinary request, then closed
            self.pause_reading()
        except httptools.HttpParserError as exc:
            current = self._current
            if current is not None:  # the head was good, the body framing is not
                self._current = None
                self.closing = True
                self.pause_reading()
                current.content.set_exception(MalformedRequest("the request body is malformed"))
            elif isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "request header fields too large")
            else:
                self._refuse(400, "bad request")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def eof_received(self) -> bool | None:
        # As most servers: a client that stops sending is gone (the transport closes, a
        # handler still running is cancelled).
        return None

    # ---- parser callbacks (httptools)
    def on_message_begin(self) -> None:
        self._url, self._headers, self._head_size = [], [], 0
        self._arm(self.server.header_timeout, self._head_expired)

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._grow(len(name) + len(value) + 4)

    def _grow(self, n: int) -> None:
        self._head_size += n
        if self._head_size > self.server.max_head_bytes:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._disarm()
        parser = self._parser
        request = Request(
            self,
            parser.get_method().decode("ascii"),
            b"".join(self._url).decode("utf-8", "surrogateescape"),
            tuple(self._headers),
            parser.get_http_version(),
            parser.should_keep_alive() and not self._upgrade,
            self._head_size,
        )
        self._current = request
        self._queue.append(request)
        if len(self._queue) > _MAX_PIPELINED:
            self.pause_reading()
        if self._task is None:
            self._task = asyncio.ensure_future(self._serve())

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current.content.feed(body)

    def on_message_complete(self) -> None:
        if self._current is not None:
            self._current.content.feed_eof()
            self._current = None

    # ---- answering
    async def _serve(self) -> None:
        handler = self.server.handler
        while self._queue:
            request = self._queue[0]
            try:
                response = await handler(request)
                if not response.prepared:
                    if isinstance(response, Response):
                        await response.send(request)
                    else:
                        raise RuntimeError("a handler returned an unprepared StreamResponse")
            except asyncio.CancelledError:
                self.abort()
                return
            except ConnectionError as exc:
                log.debug("answer not sent: %s", type(exc).__name__)
                self.abort()
                return
            except Exception:
                log.exception("answer not sent")
                self.abort()
                return
            self._queue.popleft()
            if not (response.keep_alive and request.content.complete) or self._upgrade:
                self.close()
                return
            if self._reading_paused and len(self._queue) <= _MAX_PIPELINED // 2:
                self.resume_reading()
        self._task = None
        if self.server.draining:
            self.close()
        elif self._current is None:
            self._arm(_IDLE_TIMEOUT, self._idle_expired)

    def _refuse(self, status: int, text: str) -> None:
        """A request that cannot be parsed: a plain answer, then the connection closes."""
        self.closing = True
        self._current = None
        if self._task is None and self.transport is not None:
            body = f"{status} {text}\n".encode()
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: text/plain; "
                f"charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.close()

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client disconnected")
        self.transport.write(data)

    async def drain(self) -> None:
        if not self.paused:
            return
        self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closing:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if self._task is None:
            self.close()

    # ---- timers
    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self.deadline = time.monotonic() + seconds
        self._on_deadline = callback

    def _disarm(self) -> None:
        self.deadline = self._on_deadline = None

    def expire(self) -> None:
        """Called by the server's sweep once ``deadline`` has passed."""
        callback = self._on_deadline
        self._disarm()
        if callback is not None:
            callback()

    def _idle_expired(self) -> None:
        if self._task is None:
            self.close()

    def _head_expired(self) -> None:
        self._refuse(408, "request headers not received in time")


class _HeadTooLarge(Exception):
    pass


class HttpServer:
    """Serves ``handler`` on listening sockets; ``await start(...)``, ``await close()``."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_head_bytes: int,
        header_timeout: float,
        secure: bool = False,
    ) -> None:
        self.handler = handler
        self.max_head_bytes = max_head_bytes
        self.header_timeout = header_timeout
        self.secure = secure
        self.connections: set[_Connection] = set()
        self.draining = False
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None

    def _factory(self) -> _Connection:
        return _Connection(self)

    async def listen(self, **kwargs: Any) -> asyncio.Server:
        """``loop.create_server`` with this protocol (``sock=``, ``host=``, ``ssl=``, ...)."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._factory, **kwargs)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        return server

    async def _sweep(self) -> None:
        """Close connections past their deadline (idle keep-alive, a head not received)."""
        interval = min(0.25, self.header_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in [c for c in self.connections if c.deadline is not None]:
                if conn.deadline is not None and conn.deadline <= now:
                    conn.expire()

    @property
    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for srv in self._servers for s in srv.sockets]

    def stop_listening(self) -> None:
        """Refuse new connections and close the idle keep-alive ones."""
        self.draining = True
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close_if_idle()

    async def close(self) -> None:
        self.stop_listening()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
