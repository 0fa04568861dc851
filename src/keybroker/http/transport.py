"""The seam the proxy forwards through: a :class:`Transport` sends one request and returns an
:class:`Answer` whose body streams.  :class:`~keybroker.http.client.UpstreamClient` (pooled
sockets, the guarded resolver) is the one keybroker runs; a test may hand the proxy an
in-memory transport instead where a socket to an upstream adds nothing — as httpx's
``BaseTransport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol, Self

from multidict import CIMultiDict

from keybroker.http.upstream import Delivery

__all__ = ["Answer", "Transport"]


class Answer(Protocol):
    """An upstream's answer: status line and headers read, body not yet.  Used as an async
    context manager; leaving it (or :meth:`close`) before the body ended discards the rest."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    #: the body's announced length, ``None`` when chunked or close-delimited
    content_length: int | None

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives.  Raises ``UpstreamFailure`` or ``TimeoutError``."""
        ...

    def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Transport(Protocol):
    """Sends requests to upstreams."""

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
    ) -> Answer:
        """Send one request and return its answer once the head arrived.  Raises
        ``UpstreamFailure`` (no answer), ``DestinationRefused`` (the host resolves to an
        address keybroker never connects to), or the body iterator's own exception.
        ``delivery.started`` turns True once any byte of the request left; ``resend``: the
        request only reads, so it may be sent again when a reused connection died unanswered."""
        ...

    async def close(self) -> None:
        """Close every connection."""
        ...
