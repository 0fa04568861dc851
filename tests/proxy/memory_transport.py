"""An in-memory upstream for the proxy's transport seam (:mod:`keybroker.http.transport`):
it records what the proxy would send and answers from a function, with no socket."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Self

from multidict import CIMultiDict

from keybroker.http.upstream import Delivery


@dataclass
class Sent:
    method: str
    scheme: str
    host: str
    target: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class MemoryAnswer:
    status: int
    body: bytes = b""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    reason: str = "OK"
    closed: bool = False

    @property
    def content_length(self) -> int | None:
        return len(self.body)

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 7):  # in pieces, as a socket would
            yield self.body[start : start + 7]

    def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class MemoryTransport:
    """Answers every request with ``answer(sent)``; keeps every request in ``sent``."""

    def __init__(self, answer: Callable[[Sent], MemoryAnswer]) -> None:
        self.answer = answer
        self.sent: list[Sent] = []
        self.closed = False

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
    ) -> MemoryAnswer:
        if delivery is not None:
            delivery.started = True
        if body is None or isinstance(body, bytes):
            data = body or b""
        else:
            data = b"".join([chunk async for chunk in body])
        sent = Sent(method, scheme, host, target, CIMultiDict(headers), data)
        self.sent.append(sent)
        return self.answer(sent)

    async def close(self) -> None:
        self.closed = True
