"""Bodies the proxy must hash itself, kept in bounded memory.

A scheme whose signature covers the body but whose request carries no payload-hash header
(AWS query/JSON APIs, Volcengine without ``X-Content-Sha256``, ...) makes the proxy hash the
body before it can verify anything — so the body must be held until then.  Small bodies stay
in memory; past ``threshold`` bytes they go to an anonymous temporary file, hashed on the way
in, and are streamed from there to the upstream after verification.  Memory stays bounded by
the threshold whatever the body size (which ``MaxBodyBytes`` still caps).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from keybroker.errors import PayloadTooLarge

if TYPE_CHECKING:
    from keybroker.http.server import Request

__all__ = ["SPOOL_THRESHOLD", "SpooledBody", "spool_body"]

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
    from keybroker.proxy.forwarding import body_chunks

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
