"""``aws-chunked`` bodies, verified chunk by chunk and re-signed while they stream.

An S3 upload may send its body in chunks (``Content-Encoding: aws-chunked``), announced by
``x-amz-content-sha256``:

* ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: each chunk is ``hex-size;chunk-signature=SIG\\r\\n
  data\\r\\n``; the signatures form a chain that starts at the seed signature of the
  ``Authorization`` header and ends with a zero-size chunk::

      SIG(n) = HMAC(key, "AWS4-HMAC-SHA256-PAYLOAD\\n" timestamp "\\n" scope "\\n"
                    SIG(n-1) "\\n" sha256("") "\\n" sha256(data n))

* ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``: the same, then trailer lines named by
  ``x-amz-trailer`` (a checksum such as ``x-amz-checksum-crc32:BASE64``) and
  ``x-amz-trailer-signature``, chained from the zero-size chunk's signature over the trailers in
  canonical form (``name:value\\n`` each) with the prefix ``AWS4-HMAC-SHA256-TRAILER``.
* ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (boto3's PutObject over HTTPS): ``hex-size\\r\\n``
  chunks without signatures and a checksum trailer; the body is forwarded byte for byte and only
  the checksum is checked.

Checksums (CRC32, SHA-1, SHA-256; CRC32C when ``google-crc32c`` or ``crc32c`` is installed) are
computed over the decoded payload and compared with the trailer; CRC64/NVME has no fast
implementation here and is left to the upstream, which checks it too.

Memory stays flat whatever the body's size.  Incoming chunks are checked with a running
SHA-256, never held whole.  A re-signed chunk's signature must precede its data, so the signed
variants are re-framed into chunks of :data:`OUT_CHUNK` bytes: at most one such chunk is held
while its hash is computed.  The new framing is fixed by the decoded length and the trailer
names alone, so :func:`encoded_length` tells the upstream ``Content-Length`` before the first
byte is read (it equals the client's when the client also used 64 KiB chunks).

Data leaves as soon as it is known, but the *end* of the body (the last data chunk, the
zero-size chunk and the trailers) is held until every incoming signature and checksum has
verified.  When a chunk fails, the transformer raises and the forwarder cuts the upstream
request: the upstream never sees a complete request whose chunks did not verify, so nothing is
stored.

The framing parser is in :mod:`keybroker.signers.sigv4.chunked_framing`, the trailers and their
checksums in :mod:`keybroker.signers.sigv4.chunked_trailers`; every name of ``__all__`` stays
importable from here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from multidict import CIMultiDict

from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.sigv4.chunked_framing import SIG_FIELD, Framing
from keybroker.signers.sigv4.chunked_trailers import (
    CHECKSUMS,
    TRAILER_SIG,
    canonical_trailers,
)

__all__ = [
    "OUT_CHUNK",
    "SIGNED",
    "SIGNED_TRAILER",
    "UNSIGNED_TRAILER",
    "ChunkChain",
    "SignedChunkTransformer",
    "UnsignedTrailerTransformer",
    "decoded_length",
    "encoded_length",
]

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
OUT_CHUNK = 64 * 1024  # AWS's recommended chunk size: the same framing as most SDKs
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DIGITS = re.compile(r"[0-9]{1,19}")


# -- headers ---------------------------------------------------------------------------------


def decoded_length(headers: CIMultiDict[str]) -> int | None:
    """``x-amz-decoded-content-length`` as a number.  Raises ``MalformedSignature``."""
    values = headers.getall("x-amz-decoded-content-length", [])
    if not values:
        return None
    if len(values) > 1 or not _DIGITS.fullmatch(values[0].strip()):
        raise MalformedSignature("x-amz-decoded-content-length must be one whole number")
    return int(values[0].strip())


def encoded_length(decoded: int, trailers: Sequence[str]) -> int:
    """The length of the body the signed transformers send for ``decoded`` payload bytes."""
    full, rest = divmod(decoded, OUT_CHUNK)
    length = full * _frame_length(OUT_CHUNK)
    if rest:
        length += _frame_length(rest)
    length += _frame_length(0) - 2  # "0;chunk-signature=...\r\n", no data CRLF
    if trailers:
        for name in trailers:
            length += len(name) + 1 + CHECKSUMS[name][0] + 2
        length += len(TRAILER_SIG) + 1 + 64 + 2
    return length + 2  # the blank line that ends the body


def _frame_length(size: int) -> int:
    return len(f"{size:x}") + 1 + len(SIG_FIELD) + 64 + 2 + size + 2


# -- signature chains ------------------------------------------------------------------------


@dataclass(slots=True)
class ChunkChain:
    """One chain of chunk signatures: a signing key, the request's time and scope, and the
    signature the next link is chained from (the seed at first)."""

    key: bytes = field(repr=False)
    algorithm: str
    timestamp: str
    scope: str
    previous: str = field(repr=False)

    def chunk(self, data_sha256: str) -> str:
        """Sign the chunk whose data hashes to ``data_sha256`` and move the chain on."""
        return self._link(f"{self.algorithm}-PAYLOAD", f"{_EMPTY_SHA256}\n{data_sha256}")

    def trailer(self, canonical: bytes) -> str:
        """Sign the canonical trailers (``name:value\\n`` each) and move the chain on."""
        return self._link(f"{self.algorithm}-TRAILER", hashlib.sha256(canonical).hexdigest())

    def _link(self, kind: str, tail: str) -> str:
        text = f"{kind}\n{self.timestamp}\n{self.scope}\n{self.previous}\n{tail}"
        self.previous = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
        return self.previous


# -- the transformers ------------------------------------------------------------------------


class UnsignedTrailerTransformer(Framing):
    """``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: the body passes byte for byte; the zero-size
    chunk and the trailers are held until the checksum has matched."""

    def __init__(self, trailers: Sequence[str], declared: int | None) -> None:
        super().__init__(signed=False, trailers=trailers, declared=declared)
        self._out = bytearray()
        self._tail = bytearray()

    def _chunk_start(self, size: int, sig: str | None, line: bytes) -> None:
        self._out += line

    def _data(self, data: memoryview) -> None:
        self._out += data

    def _chunk_end(self) -> None:
        self._out += b"\r\n"

    def _final_chunk(self, sig: str | None, line: bytes) -> None:
        self._tail += line

    def _final_bytes(self, line: bytes) -> None:
        self._tail += line

    def _end(self) -> None:
        self._out += self._tail

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


class SignedChunkTransformer(Framing):
    """``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``: each incoming chunk is verified along
    ``incoming`` (the proxy key); the payload is re-framed into :data:`OUT_CHUNK` chunks signed
    along ``outgoing`` (the real key).  The body sent is :func:`encoded_length` bytes long."""

    def __init__(
        self,
        incoming: ChunkChain,
        outgoing: ChunkChain,
        trailers: Sequence[str],
        declared: int,
    ) -> None:
        super().__init__(signed=True, trailers=trailers, declared=declared)
        self._in, self._up = incoming, outgoing
        self._expected = ""
        self._digest = hashlib.sha256()
        self._pending = bytearray()  # payload of the outgoing chunk being filled
        self._out = bytearray()
        # An incoming chunk that is exactly one outgoing chunk (the usual 64 KiB framing):
        # its digest serves both signatures, so its payload is hashed once, not twice.
        self._aligned = False

    def _chunk_start(self, size: int, sig: str | None, line: bytes) -> None:
        self._expected = sig or ""
        self._digest = hashlib.sha256()
        self._aligned = size == OUT_CHUNK and not self._pending

    def _data(self, data: memoryview) -> None:
        self._digest.update(data)
        if self._aligned:
            self._pending += data  # emitted, already hashed, when the chunk ends
            return
        while data:
            take = min(OUT_CHUNK - len(self._pending), len(data))
            self._pending += data[:take]
            data = data[take:]
            if len(self._pending) == OUT_CHUNK:
                self._emit_chunk()

    def _chunk_end(self) -> None:
        digest = self._digest.hexdigest()
        self._check(self._in.chunk(digest), self._expected)
        if self._aligned:
            self._emit_chunk(digest)
            self._aligned = False

    def _final_chunk(self, sig: str | None, line: bytes) -> None:
        self._check(self._in.chunk(_EMPTY_SHA256), sig or "")

    def _end(self) -> None:
        if self._trailers:
            sig = self._in.trailer(canonical_trailers(self._received))
            self._check(sig, self._trailer_sig or "")
        if self._pending:
            self._emit_chunk()
        final = self._up.chunk(_EMPTY_SHA256)
        self._out += f"0;chunk-signature={final}\r\n".encode()
        if self._trailers:
            for name in sorted(self._received):
                self._out += f"{name}:{self._received[name]}\r\n".encode()
            trailer_sig = self._up.trailer(canonical_trailers(self._received))
            self._out += f"{TRAILER_SIG}:{trailer_sig}\r\n".encode()
        self._out += b"\r\n"

    def _emit_chunk(self, digest: str | None = None) -> None:
        sig = self._up.chunk(digest or hashlib.sha256(self._pending).hexdigest())
        self._out += f"{len(self._pending):x};chunk-signature={sig}\r\n".encode()
        self._out += self._pending
        self._out += b"\r\n"
        self._pending.clear()

    @staticmethod
    def _check(expected: str, sent: str) -> None:
        if not hmac.compare_digest(expected, sent):
            raise SignatureMismatch()

    def _take(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
