"""The ceiling for large transfers: a bare byte relay, run as ``python -m bench.relay PORT
UPSTREAM_PORT`` (one process, uvloop).

Each client connection is relayed to a new upstream connection, bytes copied both ways as they
arrive: no HTTP parsing, no hashing, nothing buffered past a 1 MiB write buffer (a full buffer
pauses reading on the other side).  What a proxy moves per second cannot be much above what this
moves, whatever it is written with, as long as it is Python on asyncio.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

__all__ = ["main"]

_WRITE_HIGH = 1 << 20


class _Side(asyncio.Protocol):
    """One end of a relayed connection; what it receives is written to ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        elif peer is None:
            self.early.append(data)  # the upstream connection is still being opened

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is None:
            self.early_eof = True
        elif peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # half-closed: the other direction may still have bytes to carry

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class _Client(_Side):
    """The accepted side: reading pauses until the upstream connection is open (what came
    before the pause took effect is kept and sent first)."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        cast(asyncio.Transport, transport).pause_reading()
        self._connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        upstream = _Side()
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: upstream, "127.0.0.1", self.upstream_port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        if self.transport is None:  # the client went away meanwhile
            if upstream.transport is not None:
                upstream.transport.close()
            return
        self.peer, upstream.peer = upstream, self
        if upstream.transport is not None:
            upstream.transport.writelines(self.early)
            if self.early_eof:
                upstream.transport.write_eof()
        self.early.clear()
        self.transport.resume_reading()


async def _serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: _Client(upstream_port), "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop
    except ImportError:  # the "fast" extra is optional
        asyncio.run(_serve(port, upstream_port))
        return
    uvloop.run(_serve(port, upstream_port))


if __name__ == "__main__":
    main()
