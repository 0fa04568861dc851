"""The pipe a supervisor hands each worker its config through.

The supervisor writes every config it accepts (the file's text, as read and checked by it) as
one frame — an 8-byte big-endian length, then the UTF-8 text — into a pipe whose read end the
worker inherited.  So:

* no copy of the config (which may hold plaintext real credentials) is ever written to disk;
* a worker restarted while the file on disk is broken still gets the last good config;
* the pipe's end of file means the supervisor is gone (even ``kill -9``, the OOM killer): the
  worker stops accepting, drains what it has, and exits — it never serves alone.

A worker that cannot start (a config that does not load, a key service that cannot be set up,
a port it cannot listen on) exits with :data:`EX_CONFIG`; the supervisor then stops and
``keybroker serve`` exits non-zero instead of restarting it forever.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable

__all__ = ["EX_CONFIG", "ConfigChannel", "write_frame"]

#: sysexits.h EX_CONFIG: a worker that could not start because of its configuration
EX_CONFIG = 78

_HEADER = struct.Struct(">Q")
#: the largest frame accepted (config files are bounded by ``config_load.MAX_CONFIG_BYTES``)
MAX_FRAME = 4 * 1024 * 1024


def write_frame(fd: int, text: str) -> None:
    """Write one config frame to the pipe ``fd`` (blocking; a config is small)."""
    data = text.encode("utf-8")
    if len(data) > MAX_FRAME:
        raise ValueError(f"a config frame is limited to {MAX_FRAME} bytes")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class ConfigChannel:
    """The worker's end: the latest config text, and the supervisor's liveness."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.latest = ""
        self._buffer = bytearray()

    def read_first(self) -> str:
        """Block until the first frame arrives; ``EOFError`` if the supervisor is gone."""
        while not self._take_frames():
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the supervisor closed the config pipe")
            self._buffer += chunk
        return self.latest

    def follow(self, on_config: Callable[[], object], on_eof: Callable[[], object]) -> None:
        """Watch the pipe from the running loop: ``on_config()`` after each new frame,
        ``on_eof()`` once the supervisor is gone."""
        loop = asyncio.get_running_loop()
        os.set_blocking(self.fd, False)

        def readable() -> None:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(self.fd)
                on_eof()
                return
            self._buffer += chunk
            if self._take_frames():
                on_config()

        loop.add_reader(self.fd, readable)

    def _take_frames(self) -> bool:
        """Consume every complete frame in the buffer; True if one was found."""
        found = False
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ValueError("the config pipe sent an oversized frame")
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            self.latest = bytes(self._buffer[_HEADER.size : end]).decode("utf-8")
            del self._buffer[:end]
            found = True
        return found
