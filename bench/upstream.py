"""A minimal HTTP/1.1 upstream for the benchmarks, run in a process of its own::

    python -m bench.upstream PORT

Every request is read whole (``Content-Length`` or chunked body, discarded as it arrives) and
answered ``200`` with a small JSON body; ``GET .../big/<n>`` streams ``n`` bytes instead, and a
path starting ``/slow`` is answered after half a second.
Raw asyncio on uvloop (when installed) rather than a framework: the benchmark measures the
proxy, so the upstream must cost as little CPU per request as possible.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import cast

__all__ = ["SLOW_SECONDS", "SMALL_BODY", "UpstreamProtocol", "main", "serve"]

SMALL_BODY = b'{"ok":true}'
_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(SMALL_BODY)
) + SMALL_BODY
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_MAX_HEAD = 64 * 1024
_BLOCK = memoryview(b"x" * (256 * 1024))
SLOW_SECONDS = 0.5  # how long ``/slow...`` requests wait for their answer


class UpstreamProtocol(asyncio.Protocol):
    """One connection: parse requests (pipelined ones too), skip bodies, answer."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.mode = "head"  # head | length | chunk-size | chunk-data | trailer
        self.remaining = 0
        self.path = b""
        self.method = b""
        self.close_after = False
        self.transport: asyncio.Transport | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.mode == "length" and not self.buf:
            # fast path for large bodies: count the bytes, copy nothing
            take = min(self.remaining, len(data))
            self.remaining -= take
            if take == len(data):
                if not self.remaining:
                    self._answer()
                return
            data = data[take:]
            if not self.remaining:
                self.buf += data
                self._answer()
                return
        self.buf += data
        self._process()

    def _process(self) -> None:
        while self.buf and not self.streaming:
            before = (self.mode, len(self.buf))
            step = getattr(self, "_step_" + self.mode.replace("-", "_"))
            step()
            if self.transport is None or self.transport.is_closing():
                return
            if (self.mode, len(self.buf)) == before:
                return  # needs more data

    def _step_head(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > _MAX_HEAD:
                self._fail()
            return
        head = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[: end + 4]
        parts = head[0].split(b" ")
        if len(parts) != 3:
            self._fail()
            return
        self.method, self.path = parts[0], parts[1]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self.close_after = headers.get(b"connection", b"").lower() == b"close"
        if headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(_CONTINUE)
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self.mode = "chunk-size"
            return
        self.remaining = int(headers.get(b"content-length", b"0") or 0)
        self.mode = "length"
        if not self.remaining:
            self._answer()

    def _step_length(self) -> None:
        take = min(self.remaining, len(self.buf))
        del self.buf[:take]
        self.remaining -= take
        if not self.remaining:
            self._answer()

    def _step_chunk_size(self) -> None:
        end = self.buf.find(b"\r\n")
        if end < 0:
            return
        size = int(bytes(self.buf[:end]).split(b";")[0] or b"0", 16)
        del self.buf[: end + 2]
        self.remaining = size + 2  # the data and its CRLF
        self.mode = "chunk-data" if size else "trailer"

    def _step_chunk_data(self) -> None:
        take = min(self.remaining, len(self.buf))
        del self.buf[:take]
        self.remaining -= take
        if not self.remaining:
            self.mode = "chunk-size"

    def _step_trailer(self) -> None:
        end = self.buf.find(b"\r\n")
        if end < 0:
            return
        del self.buf[: end + 2]
        if end == 0:  # the blank line that ends the trailers
            self._answer()

    def _answer(self) -> None:
        self.mode = "head"
        transport = self.transport
        if transport is None:
            return
        marker = self.path.find(b"/big/")
        if self.method == b"GET" and marker >= 0:
            size = int(self.path[marker + 5 :].split(b"?")[0] or b"0")
            self._later(self._stream(size))
        elif self.path.startswith(b"/slow"):
            self._later(self._slow())
        else:
            transport.write(_OK)
            if self.close_after:
                transport.close()

    def _later(self, answer: Coroutine[None, None, None]) -> None:
        """Answer from a task; the connection reads nothing more until it is done."""
        assert self.transport is not None
        self.streaming = True
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._then_resume(answer))

    async def _slow(self) -> None:
        # the answer waits, so a proxy in between holds every such request at once
        await asyncio.sleep(SLOW_SECONDS)
        if self.transport is not None:
            self.transport.write(_OK)

    async def _stream(self, size: int) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        sent = 0
        while sent < size and not transport.is_closing():
            await self.writable.wait()
            piece = _BLOCK[: min(len(_BLOCK), size - sent)]
            transport.write(piece)
            sent += len(piece)

    async def _then_resume(self, answer: Coroutine[None, None, None]) -> None:
        await answer
        transport = self.transport
        self.streaming = False
        if transport is None or transport.is_closing():
            return
        if self.close_after:
            transport.close()
            return
        transport.resume_reading()
        self._process()

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.write(_BAD)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.writable.set()


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:  # the "fast" extra is optional
        asyncio.run(serve(port))
        return
    uvloop.run(serve(port))


if __name__ == "__main__":
    main()
