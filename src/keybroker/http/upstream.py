"""One upstream HTTP/1.1 connection of :mod:`keybroker.http.client`'s pool, and the answers it
carries: parsed by llhttp (``httptools``), the body streamed with a bound on what is held."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import httptools
from multidict import CIMultiDict

from keybroker.http.messages import FlowControl, wait

__all__ = [
    "Delivery",
    "NotSent",
    "Pool",
    "Stale",
    "UpstreamConnection",
    "UpstreamFailure",
    "UpstreamResponse",
]


class Delivery:
    """Whether any byte of one request was handed to an upstream connection's transport.

    ``started`` stays False only when the request provably never reached the upstream (no
    connection, a refused destination, a body refused before its first chunk): the replay
    entry of such a request is released, so an identical retry is not a replay."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


class Pool(Protocol):
    """What a connection needs of the pool that made it."""

    read_timeout: float | None

    def _release(self, conn: UpstreamConnection) -> None: ...
    def _forget(self, conn: UpstreamConnection) -> None: ...


_HIGH_WATER = 512 * 1024
_LOW_WATER = 128 * 1024
_WRITE_HIGH = 1024 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


class UpstreamFailure(Exception):
    """The upstream could not be reached, broke the connection, or timed out.  The message is
    a short reason, never a URL or a header; ``kind`` names the failure for logs, metrics and
    the 502's message: ``dns``, ``refused``, ``timeout``, ``tls``, ``tls-certificate``,
    ``reset`` (closed or broken mid-answer), ``protocol`` (not HTTP), ``unreachable``."""

    def __init__(self, message: str, kind: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = kind


class Stale(UpstreamFailure):
    """A pooled connection was closed by the server before any answer byte."""


class NotSent(Stale):
    """A pooled connection was found closed before any byte of the request was written."""


class UpstreamResponse:
    """Status, reason and headers of an answer; its body from :meth:`chunks`.  Use as an
    async context manager (or call :meth:`close`): a body not read to its end closes the
    connection instead of returning it to the pool."""

    def __init__(self, conn: UpstreamConnection) -> None:
        self._conn = conn
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.content_length: int | None = None
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; each wait bounded by the read timeout."""
        conn = self._conn
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._size -= len(chunk)
                if self._size < _LOW_WATER:
                    conn.resume_reading()
                yield chunk
                continue
            if self._error is not None:
                raise self._error
            if self._complete:
                break
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await wait(self._waiter, conn.client.read_timeout, _read_timed_out)
            finally:
                self._waiter = None
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._conn.finished(reusable=self._complete and not self._chunks)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _keeps_alive(version: str, headers: CIMultiDict[str]) -> bool:
    """Whether the server's answer lets the connection stay open: HTTP/1.1 unless it says
    ``close``, HTTP/1.0 only if it says ``keep-alive`` and not ``close``.  llhttp's own check
    knows no HEAD request (it wants a body for the length) and lets ``keep-alive, close``
    keep an HTTP/1.0 connection open."""
    tokens = {t.strip().lower() for v in headers.getall("connection", []) for t in v.split(",")}
    if version == "1.1":
        return "close" not in tokens
    return version == "1.0" and "keep-alive" in tokens and "close" not in tokens


def _read_timed_out() -> UpstreamFailure:
    return UpstreamFailure("timed out reading the answer", "timeout")


def _head_timed_out() -> UpstreamFailure:
    return UpstreamFailure("timed out waiting for the answer", "timeout")


class UpstreamConnection(FlowControl):
    """One pooled connection; carries one request at a time."""

    def __init__(self, client: Pool, key: tuple[str, str, int]) -> None:
        self.client = client
        self.key = key
        self.dead = False
        self.idle_since = 0.0
        self._response: UpstreamResponse | None = None
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        self._got_bytes = False
        self._writer: asyncio.Task[None] | None = None

    # ---- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # large bodies move in big steps: fewer pause/resume round trips than the default 64 KiB
        transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_HIGH // 4)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("upstream closed the connection"))
        resp = self._response
        if resp is None:
            return
        head = self._head
        if head is not None and not head.done():
            err = Stale if not self._got_bytes else UpstreamFailure
            head.set_exception(err("the upstream closed the connection"))
        elif not resp._complete and resp._error is None:
            delimited_by_close = resp.content_length is None and "chunked" not in (
                resp.headers.get("transfer-encoding", "").lower()
            )
            if delimited_by_close:
                resp._complete = True
            else:
                resp._error = UpstreamFailure(
                    "the upstream closed the connection mid-answer", "reset"
                )
            resp._wake()

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        parser = self._parser
        if parser is None:  # bytes nobody asked for: the connection is out of step
            self.abort()
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamFailure("the upstream answer is not valid HTTP", "protocol"))

    # ---- parser callbacks
    def on_status(self, reason: bytes) -> None:
        if self._response is not None:
            self._response.reason = reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        resp = self._response
        if resp is not None and resp._complete:  # a message after the answer's end
            self.dead = True
            return
        if resp is not None:
            resp.headers.add(
                name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
            )

    def on_headers_complete(self) -> None:
        resp, parser = self._response, self._parser
        if resp is None or parser is None:
            return
        status = parser.get_status_code()
        if status < 200:  # informational: the real answer follows on the same parser
            resp.headers = CIMultiDict()
            return
        resp.status = status
        length = resp.headers.get("content-length")
        if length is not None and length.isdigit():
            resp.content_length = int(length)
        if self._head_only or status in _NO_BODY_STATUS:
            # no body follows: the answer ends here, and so may the connection (on_message_complete
            # does not run for a HEAD answer that announces a length)
            if not _keeps_alive(parser.get_http_version(), resp.headers):
                self.dead = True
            resp._complete = True
            self._parser = None
        head = self._head
        if head is not None and not head.done():
            head.set_result(resp)

    def on_body(self, body: bytes) -> None:
        resp = self._response
        if resp is not None and resp._complete:  # a body after a HEAD/204/304 answer's end:
            self.dead = True  # the server is out of step; these bytes are nobody's answer
            return
        if resp is not None:
            resp._chunks.append(body)
            resp._size += len(body)
            if resp._size > _HIGH_WATER:
                self.pause_reading()
            resp._wake()

    def on_message_complete(self) -> None:
        resp = self._response
        parser = self._parser
        if resp is not None and resp.status and parser is not None:  # (0: the end of a 1xx)
            keep = parser.should_keep_alive()  # (llhttp misses "close" in an HTTP/1.0 list)
            if not keep or not _keeps_alive(parser.get_http_version(), resp.headers):
                self.dead = True  # the server closes it: not back to the pool
            resp._complete = True
            self._parser = None
            resp._wake()

    # ---- requests
    async def send(
        self,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        chunked: bool,
        delivery: Delivery | None = None,
    ) -> UpstreamResponse:
        self._response = UpstreamResponse(self)
        self._parser = httptools.HttpResponseParser(self)
        self._got_bytes = False
        self._head_only = head.startswith(b"HEAD ")
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        transport = self.transport
        if transport is None or self.dead or transport.is_closing():
            raise NotSent("the pooled connection is closed")
        read_timeout = self.client.read_timeout
        if body is None or isinstance(body, bytes):
            if delivery is not None:
                delivery.started = True
            transport.write(head + body if body else head)
            return await self._await_head(read_timeout)
        writer = self._writer = asyncio.ensure_future(
            self._write_body(head, body, chunked, delivery)
        )
        await asyncio.wait((self._head, writer), return_when=asyncio.FIRST_COMPLETED)
        if writer.done():
            exc = writer.exception()
            if exc is not None and not self._head.done():
                self.abort()
                if isinstance(exc, ConnectionError):
                    raise UpstreamFailure("the upstream closed the connection", "reset") from None
                raise exc
        return await self._await_head(read_timeout if writer.done() else None)

    async def _await_head(self, timeout: float | None) -> UpstreamResponse:
        """The answer's head; a timeout fails the request, and the pool then drops this
        connection (``finished(reusable=False)``)."""
        assert self._head is not None
        return await wait(self._head, timeout, _head_timed_out)

    async def _write_body(
        self,
        head: bytes,
        body: AsyncIterable[bytes],
        chunked: bool,
        delivery: Delivery | None,
    ) -> None:
        # The head goes with the first body bytes: a body refused before its first chunk
        # (a bad signature, a wrong hash) leaves the upstream without even a request head.
        transport = self.transport
        assert transport is not None
        pending = head
        async for chunk in body:
            if not chunk:
                continue
            if self.dead:
                raise ConnectionResetError("upstream closed the connection")
            data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk
            if pending:
                data, pending = pending + data, b""
            if delivery is not None:
                delivery.started = True
            transport.write(data)
            if self.paused:
                await self.drain()
        if self.dead:
            raise ConnectionResetError("upstream closed the connection")
        if delivery is not None:
            delivery.started = True
        transport.write(pending + b"0\r\n\r\n" if chunked else pending)

    def _fail(self, exc: UpstreamFailure) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        elif self._response is not None and not self._response._complete:
            self._response._error = exc
            self._response._wake()
        self.abort()

    def finished(self, reusable: bool) -> None:
        """The answer is done with: back to the pool, or closed."""
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            reusable = False
        elif writer is not None and not writer.cancelled() and writer.exception() is not None:
            reusable = False
        self._response = self._head = None
        if reusable and not self.dead and self._parser is None:
            self.client._release(self)
        else:
            self.abort()
            self.client._forget(self)

    def _gone(self) -> bool:
        return self.dead

    def abort(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.abort()
