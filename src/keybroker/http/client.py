"""The proxy's upstream HTTP/1.1 client: keep-alive connections pooled per host, answers parsed
by llhttp (``httptools``) and streamed, nothing followed (no redirects), nothing decoded.

Every new connection resolves its host through the :class:`~keybroker.http.netguard.GuardedResolver`
and connects to an address it allowed.

A connection goes back to the pool only when its answer ended where the protocol says and
neither side said ``Connection: close``; it is reused only if it stayed idle less than
``IDLE_SECONDS`` and shows nothing to read (neither the server's close nor stray bytes).  A
request whose pooled connection then closes before any answer byte is sent again on a new
connection only when nothing of it can have been acted on: it was not written at all, or its
method is safe (GET, HEAD, OPTIONS, TRACE) and its body whole bytes.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
from collections.abc import AsyncIterable

from multidict import CIMultiDict

from keybroker.http.netguard import DestinationRefused, GuardedResolver
from keybroker.http.upstream import (
    Delivery,
    NotSent,
    Stale,
    UpstreamConnection,
    UpstreamFailure,
    UpstreamResponse,
)

__all__ = ["IDLE_SECONDS", "UpstreamClient"]

#: A pooled connection unused this long is closed, not reused: below the shortest idle timeout
#: of common servers (Node.js and Apache httpd 5 s; S3 about 20 s, nginx and aiohttp 75 s, Go
#: 90 s), so a server rarely closes a connection just as a request is sent on it.
IDLE_SECONDS = 4.0
#: Methods that change nothing on the server: sent again after a reused connection closed with
#: no answer (the server may have read them; RFC 9110 9.2.2).  PUT and DELETE, idempotent by
#: the RFC, are not: on a versioned S3 bucket a second PUT makes a second version.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def _split_host(host: str, scheme: str) -> tuple[str, int]:
    default = 443 if scheme == "https" else 80
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    if port and not port.isdigit():
        raise UpstreamFailure("the upstream port is not a number")
    return name, int(port) if port else default


def _quiet(conn: UpstreamConnection) -> bool:
    """An idle connection still open with nothing to read.  Readable means the server's close
    (or bytes nobody asked for) arrived and the event loop has not handled it yet."""
    transport = conn.transport
    if conn.dead or transport is None or transport.is_closing():
        return False
    sock = transport.get_extra_info("socket")
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)


class UpstreamClient:
    """Pooled connections to upstreams; at most ``per_host`` requests per host are being sent
    or waiting for their answer's head at a time (their bodies stream back unbounded)."""

    def __init__(
        self,
        resolver: GuardedResolver,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        per_host: int = 256,
    ) -> None:
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.per_host = per_host
        self._idle: dict[tuple[str, str, int], list[UpstreamConnection]] = {}
        self._slots: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._all: set[UpstreamConnection] = set()
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        scheme: str,
        host: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterable[bytes] | None,
        delivery: Delivery | None = None,
        resend: bool = False,
    ) -> UpstreamResponse:
        """Send one request; raises :class:`UpstreamFailure` (or the body iterator's own
        exception, or ``DestinationRefused``).  A streamed body goes chunked unless
        ``headers`` carry its ``Content-Length``.  ``delivery.started`` turns True once any
        byte of the request is handed to a connection.  ``resend``: the request only reads
        (the signer said so), so it may be sent again on a new connection when a pooled one
        closes before any answer byte; a GET is not enough — RPC APIs act on GET
        (``?Action=RunInstances``), and the upstream may have executed the first copy."""
        if any(c in target for c in " \r\n\0") or not target.startswith(("/", "*")):
            raise UpstreamFailure("the request target cannot be sent")
        chunked = not isinstance(body, bytes | None) and "content-length" not in headers
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value:
                raise UpstreamFailure(f"header {name!r} cannot be sent")
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("utf-8", "surrogateescape")
        name, port = _split_host(host, scheme)
        key = (scheme, name.lower(), port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.per_host)
        async with slots:
            for _ in range(3):
                conn = self._pooled(key)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(key, name)
                try:
                    return await conn.send(head, body, chunked, delivery)
                except NotSent:
                    conn.finished(reusable=False)
                except Stale:
                    conn.finished(reusable=False)
                    replayable = (
                        resend and method in _SAFE_METHODS and isinstance(body, bytes | None)
                    )
                    if not reused or not replayable:
                        raise UpstreamFailure(
                            "the upstream closed the connection", "reset"
                        ) from None
                except BaseException:
                    conn.finished(reusable=False)
                    raise
            raise UpstreamFailure("the upstream keeps closing connections", "reset")

    def _pooled(self, key: tuple[str, str, int]) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_SECONDS and _quiet(conn):
                return conn
            conn.abort()
            self._all.discard(conn)
        return None

    async def _connect(self, key: tuple[str, str, int], name: str) -> UpstreamConnection:
        scheme, _, port = key
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout):
                try:
                    answers = await self.resolver.resolve(name, port, socket.AF_UNSPEC)
                except DestinationRefused:
                    raise
                except OSError:
                    raise UpstreamFailure(
                        "the upstream name could not be resolved", "dns"
                    ) from None
                last: OSError | None = None
                for answer in answers:
                    conn = UpstreamConnection(self, key)
                    try:
                        await loop.create_connection(
                            lambda c=conn: c,
                            answer["host"],
                            port,
                            family=answer["family"],
                            ssl=context,
                            server_hostname=name if context is not None else None,
                        )
                    except OSError as exc:
                        last = exc
                        continue
                    self._all.add(conn)
                    return conn
        except TimeoutError:
            raise UpstreamFailure("timed out connecting to the upstream", "timeout") from None
        raise _connect_failure(last)

    def _release(self, conn: UpstreamConnection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)

    def _forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)


def _connect_failure(last: OSError | None) -> UpstreamFailure:
    """Why no address of the upstream took the connection (the last attempt's reason)."""
    if isinstance(last, ssl.SSLCertVerificationError):
        return UpstreamFailure("the upstream's TLS certificate was not accepted", "tls-certificate")
    if isinstance(last, ssl.SSLError):
        return UpstreamFailure("the TLS handshake with the upstream failed", "tls")
    if isinstance(last, ConnectionRefusedError):
        return UpstreamFailure("the upstream refused the connection", "refused")
    if isinstance(last, ConnectionResetError):
        return UpstreamFailure("the upstream reset the connection", "reset")
    return UpstreamFailure("the upstream could not be reached", "unreachable")
