"""The proxy's HTTP/1.1 server: an asyncio protocol over the llhttp parser (``httptools``).

It does only what a proxy in the path of every API call needs, with as little work per request
as possible: requests are parsed by llhttp (strict: no request smuggling through
``Content-Length`` + ``Transfer-Encoding``, no bare CR/LF), bodies are handed to the handler as
a bounded stream (reading pauses past 512 KiB buffered), answers are written with their head
and first body bytes in one send.  Keep-alive and pipelining as HTTP/1.1 wants; a request whose
body was not read to its end closes the connection after the answer.

Strict where a proxy must be: an HTTP/1.1 request without exactly one ``Host`` (and any request
with two) is refused with 400 (RFC 9112, section 3.2).  Connections are capped when they are
accepted (:mod:`keybroker.http.connlimits`: in all and per client address, idle ones shed first),
and a client address the server does not admit is closed at once, before anything is read.
Every refusal the HTTP layer decides goes through one place, :meth:`HttpServer.refused`,
which hands ``(client address, reason)`` to the ``on_refuse`` callback.

A handler gets a :class:`Request` and returns a :class:`Response` (sent whole) or a
:class:`StreamResponse` it has already prepared and written to (see
:mod:`keybroker.http.messages`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httptools

from keybroker.errors import MalformedRequest
from keybroker.http.connlimits import ConnectionLimits
from keybroker.http.messages import (
    REASONS,
    ClientDisconnected,
    FlowControl,
    Request,
    Response,
    StreamResponse,
)

__all__ = [
    "HttpServer",
]

log = logging.getLogger("keybroker.server")

Handler = Callable[[Request], Awaitable[StreamResponse]]
#: ``(client address, reason)`` of a refusal the HTTP layer decided
RefusalHook = Callable[[str | None, str], None]

_WRITE_HIGH = 1024 * 1024  # write buffer before the handler waits (large answers)
_MAX_PIPELINED = 16  # parsed requests waiting behind the one being answered
_IDLE_TIMEOUT = 75.0  # a keep-alive connection with no request is closed after this


class _Connection(FlowControl):
    """One client connection: parses requests and answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.remote: str | None = None
        self.secure = server.secure
        self.closing = False
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
        reason = self.server.accept(self)
        if reason is not None:
            self.abort()  # before anything is read: nothing of the client's is parsed
            return
        self._arm(_IDLE_TIMEOUT, self._idle_expired)

    def shed(self) -> None:
        """Closed to make room for a new connection (it was idle)."""
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        self.server.limits.release(self)
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
            elif isinstance(exc.__context__, _BadHead):
                self._refuse(exc.__context__.status, str(exc.__context__))
            else:
                self._refuse(400, "bad request")

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
        version = parser.get_http_version()
        _check_host(self._headers, version)
        _check_transfer_encoding(self._headers, version)
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
            self.server.limits.busy(self)
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
            # (prepare() cleared keep_alive for a request whose body had not all arrived)
            if not response.keep_alive or self._upgrade:
                self.close()
                return
            if self._reading_paused and len(self._queue) <= _MAX_PIPELINED // 2:
                self.resume_reading()
        self._task = None
        if self.server.draining:
            self.close()
            return
        self.server.limits.idle(self)
        if self._current is None:
            self._arm(_IDLE_TIMEOUT, self._idle_expired)

    def _refuse(self, status: int, text: str) -> None:
        """A request that cannot be parsed: a plain answer, then the connection closes."""
        if not self.closing:
            self.server.refused(self.remote, text)
        self.closing = True
        self._current = None
        if self._task is None and self.transport is not None:
            body = f"{status} {text}\n".encode()
            head = (
                f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: text/plain; "
                f"charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.close()

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the client disconnected")
        self.transport.write(data)

    def _gone(self) -> bool:
        return self.closing

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


class _BadHead(Exception):
    """A head llhttp accepts but HTTP/1.1 does not (the message is the answer's text)."""

    def __init__(self, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.status = status


def _check_transfer_encoding(headers: list[tuple[bytes, bytes]], version: str) -> None:
    """``Transfer-Encoding`` only as one header saying exactly ``chunked``, and never in
    HTTP/1.0 (RFC 9112 6.1: its framing is faulty there).  llhttp also takes codings before
    ``chunked`` (``identity, chunked``) and several headers; a server behind or in front of
    us may read those differently, so the body's end would not be where we think."""
    values = [v for n, v in headers if len(n) == 17 and n.lower() == b"transfer-encoding"]
    if not values:
        return
    if version != "1.1":
        raise _BadHead("Transfer-Encoding in an HTTP/1.0 request")
    if len(values) > 1 or values[0].strip(b" \t").lower() != b"chunked":
        raise _BadHead("only one Transfer-Encoding: chunked is supported", 501)


def _check_host(headers: list[tuple[bytes, bytes]], version: str) -> None:
    """Exactly one ``Host`` in an HTTP/1.1 request, at most one in HTTP/1.0 (RFC 9112 3.2):
    two Host headers are two answers to "which site", and a proxy must not pick one."""
    count = 0
    for name, _ in headers:
        if len(name) == 4 and name.lower() == b"host":
            count += 1
    if count > 1:
        raise _BadHead("more than one Host header")
    if count == 0 and version == "1.1":
        raise _BadHead("an HTTP/1.1 request needs a Host header")


class HttpServer:
    """Serves ``handler`` on listening sockets; ``await start(...)``, ``await close()``."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_head_bytes: int,
        header_timeout: float,
        secure: bool = False,
        max_connections: int = 0,
        max_connections_per_client: int = 0,
        allow_client: Callable[[str | None], bool] | None = None,
        on_refuse: RefusalHook | None = None,
    ) -> None:
        self.handler = handler
        self.max_head_bytes = max_head_bytes
        self.header_timeout = header_timeout
        self.secure = secure
        #: connection caps (0: none), checked as each connection is accepted
        self.limits = ConnectionLimits(max_connections, max_connections_per_client)
        #: the client addresses that may connect at all (``None``: every address)
        self.allow_client = allow_client
        self.on_refuse = on_refuse
        self.connections: set[_Connection] = set()
        self.draining = False
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None

    def _factory(self) -> _Connection:
        return _Connection(self)

    def accept(self, conn: _Connection) -> str | None:
        """Admit a new connection, or the reason it is closed at once (refusal recorded)."""
        reason: str | None = None
        if self.draining:
            reason = "the server is shutting down"
        elif self.allow_client is not None and not self.allow_client(conn.remote):
            reason = "client address not allowed"
        else:
            reason = self.limits.admit(conn)
        if reason is not None:
            self.refused(conn.remote, reason)
            return reason
        self.connections.add(conn)
        return None

    def refused(self, source: str | None, reason: str) -> None:
        """The one place an HTTP-layer refusal is decided: ``on_refuse(source, reason)``
        (a failing callback is logged, never raised into the connection)."""
        hook = self.on_refuse
        if hook is None:
            return
        try:
            hook(source, reason)
        except Exception:
            log.exception("on_refuse callback failed")

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
