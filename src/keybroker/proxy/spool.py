"""Bodies the proxy must hash itself, kept in bounded memory.

A scheme whose signature covers the body but whose request carries no payload-hash header
(AWS query/JSON APIs, Volcengine without ``X-Content-Sha256``, ...) makes the proxy hash the
body before it can verify anything — so the body must be held until then.  Small bodies stay
in memory; past ``threshold`` bytes they go to an anonymous temporary file, hashed on the way
in, and are streamed from there to the upstream after verification.  Memory stays bounded by
the threshold whatever the body size (which ``MaxBodyBytes`` still caps).

:func:`body_chunks` is how every part of the proxy reads an inbound body (spooled here,
bounded or streamed upstream by :mod:`keybroker.proxy.forwarding`).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator

from keybroker.errors import PayloadTooLarge, RequestTimeout
from keybroker.http.messages import Request

__all__ = ["SPOOL_THRESHOLD", "SpooledBody", "body_chunks", "spool_body"]

SPOOL_THRESHOLD = 1024 * 1024
_READ = 64 * 1024


class SpooledBody:
    """A request body held in memory up to a threshold, then in a temporary file."""

    def __init__(self, threshold: int = SPOOL_THRESHOLD) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=threshold)  # noqa: SIM115
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of everything written."""
        return self._digest.hexdigest()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body from the start, in chunks (for the upstream request)."""
        self._file.seek(0)
        while chunk := self._file.read(_READ):
            yield chunk

    def close(self) -> None:
        self._file.close()


async def spool_body(
    request: Request, limit: int, timeout: float | None, threshold: int = SPOOL_THRESHOLD
) -> SpooledBody:
    """Read the whole body into a :class:`SpooledBody`.  Raises ``PayloadTooLarge`` past
    ``limit`` bytes and ``RequestTimeout`` for a client stalled ``timeout`` seconds."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    spooled = SpooledBody(threshold)
    try:
        async for chunk in body_chunks(request, timeout):
            if spooled.size + len(chunk) > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            spooled.write(chunk)
    except BaseException:
        spooled.close()
        raise
    return spooled


async def body_chunks(request: Request, timeout: float | None) -> AsyncIterator[bytes]:
    """The inbound body in chunks; a client that sends nothing for ``timeout`` seconds gets
    ``RequestTimeout`` instead of holding a worker's memory and a slot forever.  ``Expect:
    100-continue`` is answered here, when the body is really wanted (a refusal before that
    closes the connection instead: see ``keybroker.proxy.answers.error_response``)."""
    request.send_continue()
    content = request.content
    while True:
        try:
            chunk = await content.read(-1, timeout)  # pieces as they arrived (bounded)
        except TimeoutError:
            raise RequestTimeout(f"the request body stalled for more than {timeout} s") from None
        if not chunk:
            return
        yield chunk
