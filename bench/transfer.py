"""Large bodies through the proxy: a streamed upload and download (default 1 GiB each), and
8 concurrent 5 MB POSTs, with the workers' memory watched while they run.

The client is a plain blocking socket (one thread per request): it sends the pre-signed head,
then the body block by block from a generator, and reads the answer without keeping it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.procs import RssSampler

__all__ = ["Transfer", "concurrent_posts", "download", "upload"]

_RECV = 1 << 20


@dataclass
class Transfer:
    """One transfer: bytes moved, seconds, the answer's status."""

    status: int
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "bytes": self.nbytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 1),
        }


def _read_head(sock: socket.socket) -> tuple[int, int | None, bytes]:
    """(status, Content-Length or None, body bytes already received); skips ``100``s."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the answer's head")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        if status != 100:
            break
        buf = rest
    length = None
    for line in head.lower().split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, length, rest


def read_answer(sock: socket.socket) -> tuple[int, int]:
    """Read one answer, discarding its body; (status, body bytes)."""
    status, length, got = _read_head(sock)
    received = len(got)
    view = memoryview(bytearray(_RECV))
    while length is None or received < length:
        n = sock.recv_into(view, _RECV if length is None else min(_RECV, length - received))
        if not n:
            break
        received += n
    return status, received


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=120)


def upload(port: int, head: bytes, body: Iterator[bytes]) -> Transfer:
    """Send ``head`` then every block of ``body``; a server that answers early (refusal)
    stops the sending and its answer is returned."""
    started = time.perf_counter()
    sent = 0
    with _connect(port) as sock:
        try:
            sock.sendall(head)
            for block in body:
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # answered and closed before the whole body: read what it said
        status, _ = read_answer(sock)
    return Transfer(status, sent, time.perf_counter() - started)


def download(port: int, head: bytes) -> Transfer:
    started = time.perf_counter()
    with _connect(port) as sock:
        sock.sendall(head)
        status, received = read_answer(sock)
    return Transfer(status, received, time.perf_counter() - started)


def repeated(blocks: list[bytes], repeat: int) -> Iterator[bytes]:
    """The body generator: ``blocks`` ``repeat`` times (nothing held but the blocks)."""
    for _ in range(repeat):
        yield from blocks


def concurrent_posts(port: int, requests: list[bytes], pids: list[int]) -> dict[str, Any]:
    """Send every request at once (one connection each) while sampling the RSS of ``pids``;
    also the RSS one second after the last answer (is the memory given back?)."""
    statuses: list[int] = []
    barrier = threading.Barrier(len(requests))

    def one(raw: bytes) -> None:
        with _connect(port) as sock:
            barrier.wait()
            sock.sendall(raw)
            statuses.append(read_answer(sock)[0])

    threads = [threading.Thread(target=one, args=(r,)) for r in requests]
    started = time.perf_counter()
    with RssSampler(pids) as sampler:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seconds = time.perf_counter() - started
    time.sleep(1.0)
    after = sum(RssSampler(pids).baseline.values())
    return {
        **sampler.summary(),
        "after_all_workers_mb": round(after / 1024, 1),
        "statuses": sorted(statuses),
        "seconds": round(seconds, 3),
    }
