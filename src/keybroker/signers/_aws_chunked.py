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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict

from keybroker.errors import MalformedSignature, SignatureMismatch

__all__ = [
    "MAX_HEADER_LINE",
    "OUT_CHUNK",
    "SIGNED",
    "SIGNED_TRAILER",
    "UNSIGNED_TRAILER",
    "ChunkChain",
    "SignedChunkTransformer",
    "UnsignedTrailerTransformer",
    "decoded_length",
    "encoded_length",
    "trailer_names",
]

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
OUT_CHUNK = 64 * 1024  # AWS's recommended chunk size: the same framing as most SDKs
MAX_HEADER_LINE = 256  # "hex;chunk-signature=<64 hex>\r\n" is under 100 bytes
MAX_TRAILER_BYTES = 4096
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SIG_FIELD = b"chunk-signature="
_TRAILER_SIG = "x-amz-trailer-signature"
_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_HEX64 = re.compile(rb"[0-9a-fA-F]{64}")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_DIGITS = re.compile(r"[0-9]{1,19}")


# -- checksums -------------------------------------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    """zlib's CRC-32 behind the hashlib interface."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _Crc32c:
    """CRC-32C through whichever fast implementation is installed (``None``: none is)."""

    def __init__(self, extend: Callable[[int, bytes], int]) -> None:
        self.value = 0
        self.extend = extend

    def update(self, data: bytes | memoryview, /) -> None:
        self.value = self.extend(self.value, bytes(data))

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _crc32c_extend() -> Callable[[int, bytes], int] | None:
    try:
        import google_crc32c

        return lambda crc, data: int(google_crc32c.extend(crc, data))
    except ImportError:
        pass
    try:
        import crc32c

        return lambda crc, data: int(crc32c.crc32c(data, crc))
    except ImportError:
        return None


def _new_crc32c() -> _Hasher | None:
    extend = _crc32c_extend()
    return None if extend is None else _Crc32c(extend)


#: trailer name -> (length of its base64 value, a hasher factory; ``None``: not checked here)
_CHECKSUMS: dict[str, tuple[int, Callable[[], _Hasher | None]]] = {
    "x-amz-checksum-crc32": (8, _Crc32),
    "x-amz-checksum-crc32c": (8, _new_crc32c),
    # no CRC-64/NVME in the standard library; the upstream checks it (the value is signed)
    "x-amz-checksum-crc64nvme": (12, lambda: None),
    "x-amz-checksum-sha1": (28, hashlib.sha1),
    "x-amz-checksum-sha256": (44, hashlib.sha256),
}


# -- headers ---------------------------------------------------------------------------------


def trailer_names(headers: CIMultiDict[str]) -> tuple[str, ...]:
    """The checksum trailers announced by ``x-amz-trailer``, sorted (canonical order).
    Raises ``MalformedSignature`` for a trailer the proxy cannot re-sign."""
    names: list[str] = []
    for value in headers.getall("x-amz-trailer", []):
        names += [n.strip().lower() for n in value.split(",") if n.strip()]
    for name in names:
        if name not in _CHECKSUMS:
            raise MalformedSignature("x-amz-trailer names a trailer that is not a checksum")
    if len(set(names)) != len(names):
        raise MalformedSignature("x-amz-trailer names a trailer twice")
    return tuple(sorted(names))


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
            length += len(name) + 1 + _CHECKSUMS[name][0] + 2
        length += len(_TRAILER_SIG) + 1 + 64 + 2
    return length + 2  # the blank line that ends the body


def _frame_length(size: int) -> int:
    return len(f"{size:x}") + 1 + len(_SIG_FIELD) + 64 + 2 + size + 2


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


def _canonical_trailers(values: dict[str, str]) -> bytes:
    return "".join(f"{name}:{values[name]}\n" for name in sorted(values)).encode()


# -- the framing parser ----------------------------------------------------------------------

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class _Framing:
    """An incremental parser of the aws-chunked framing; subclasses say what to send.

    At most one partial header or trailer line is buffered; data passes straight through to
    :meth:`_data`.
    """

    def __init__(self, *, signed: bool, trailers: Sequence[str], declared: int | None) -> None:
        self._signed = signed
        self._trailers = tuple(trailers)
        self._declared = declared
        self._state = _HEADER
        self._line = bytearray()
        self._left = 0  # data bytes still due in the current chunk
        self._crlf = 0  # bytes of the CRLF after the data already seen
        self._decoded = 0
        self._trailer_bytes = 0
        self._blank_skipped = False
        self._received: dict[str, str] = {}
        self._trailer_sig: str | None = None
        self._hashers: dict[str, _Hasher | None] = {n: _CHECKSUMS[n][1]() for n in trailers}
        self._finished = False

    # feeding ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Parse ``data``; return what may be sent now.  Raises ``SignatureMismatch`` or
        ``MalformedSignature`` (see :class:`~keybroker.signers.base.BodyTransformer`)."""
        if self._finished:
            raise ValueError("feed() after finish()")
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._state == _DATA:
                take = min(self._left, end - pos)
                self._payload(view[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif self._state == _DATA_END:
                pos = self._data_end(view, pos)
            elif self._state == _DONE:
                raise MalformedSignature("aws-chunked body has bytes after its end")
            else:
                pos = self._read_line(data, view, pos)
        return self._take()

    def _read_line(self, data: bytes, view: memoryview, pos: int) -> int:
        newline = data.find(b"\n", pos)
        stop = len(view) if newline < 0 else newline + 1
        self._line += view[pos:stop]
        if len(self._line) > MAX_HEADER_LINE:
            raise MalformedSignature("aws-chunked chunk header or trailer line is too long")
        if newline >= 0:
            line = bytes(self._line)
            self._line.clear()
            if not line.endswith(b"\r\n"):
                raise MalformedSignature("aws-chunked lines must end with CRLF")
            if self._state == _HEADER:
                self._header(line)
            else:
                self._trailer_line(line)
        return stop

    def _data_end(self, view: memoryview, pos: int) -> int:
        if view[pos] != b"\r\n"[self._crlf]:
            raise MalformedSignature("aws-chunked chunk data is not followed by CRLF")
        self._crlf += 1
        if self._crlf == 2:
            self._crlf = 0
            self._state = _HEADER
            self._chunk_end()
        return pos + 1

    def _payload(self, data: memoryview) -> None:
        for hasher in self._hashers.values():
            if hasher is not None:
                hasher.update(data)
        self._data(data)

    def _header(self, line: bytes) -> None:
        size_part, sep, ext = line[:-2].partition(b";")
        if not _HEX_SIZE.fullmatch(size_part):
            raise MalformedSignature("aws-chunked chunk size is not hexadecimal")
        size = int(size_part, 16)
        sig = None
        if self._signed:
            if not ext.startswith(_SIG_FIELD) or not _HEX64.fullmatch(ext[len(_SIG_FIELD) :]):
                raise MalformedSignature("aws-chunked chunk has no valid chunk-signature")
            sig = ext[len(_SIG_FIELD) :].decode().lower()
        elif sep:
            raise MalformedSignature("unsigned aws-chunked chunks carry no extensions")
        self._decoded += size
        if self._declared is not None and self._decoded > self._declared:
            raise MalformedSignature("aws-chunked body exceeds x-amz-decoded-content-length")
        if size:
            self._left, self._state = size, _DATA
            self._chunk_start(size, sig, line)
            return
        if self._declared is not None and self._decoded != self._declared:
            raise MalformedSignature("aws-chunked body is shorter than its decoded length")
        self._state = _TRAILER
        self._final_chunk(sig, line)

    def _trailer_line(self, line: bytes) -> None:
        self._trailer_bytes += len(line)
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise MalformedSignature("aws-chunked trailers are too long")
        self._final_bytes(line)
        text = line[:-2]
        if not text:
            if self._trailers and not self._received and not self._blank_skipped:
                self._blank_skipped = True  # some writers put a blank line before trailers
                return
            self._state = _DONE
            return
        self._trailer(text)

    def _trailer(self, text: bytes) -> None:
        try:
            name_b, sep, value_b = text.partition(b":")
            # only spaces and tabs are optional whitespace (HTTP); str.strip() would also eat
            # \r, \v and \f and let a damaged line end pass
            name = name_b.decode("ascii").strip(" \t").lower()
            value = value_b.decode("ascii").strip(" \t")
        except UnicodeDecodeError:
            raise MalformedSignature("aws-chunked trailer is not ASCII") from None
        if not sep:
            raise MalformedSignature("aws-chunked trailer line has no ':'")
        if self._trailer_sig is not None:
            raise MalformedSignature("aws-chunked trailer after x-amz-trailer-signature")
        if name == _TRAILER_SIG and self._signed:
            if not _HEX64.fullmatch(value.encode()):
                raise MalformedSignature("x-amz-trailer-signature must be 64 hexadecimal digits")
            self._trailer_sig = value.lower()
            return
        if name not in self._trailers or name in self._received:
            raise MalformedSignature("aws-chunked trailer is not announced by x-amz-trailer")
        if len(value) != _CHECKSUMS[name][0] or not _B64.fullmatch(value):
            raise MalformedSignature(f"{name} trailer is not a base64 checksum")
        self._received[name] = value

    # finishing -------------------------------------------------------------------------------

    def finish(self) -> bytes:
        """Check the end of the body; return the held-back rest.  Raises
        ``SignatureMismatch`` or ``MalformedSignature``."""
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        complete = self._state == _DONE or (
            self._state == _TRAILER and not self._line and self._complete_without_blank()
        )
        if not complete:
            raise MalformedSignature("aws-chunked body ended before its final chunk")
        if set(self._received) != set(self._trailers):
            raise MalformedSignature("aws-chunked body lacks a trailer x-amz-trailer announced")
        self._check_checksums()
        self._end()
        return self._take()

    def _complete_without_blank(self) -> bool:
        """Some writers end the body right after the last trailer line, with no blank line."""
        if not self._trailers:
            return False
        return self._trailer_sig is not None if self._signed else bool(self._received)

    def _check_checksums(self) -> None:
        for name, hasher in self._hashers.items():
            if hasher is None:
                continue
            expected = base64.b64encode(hasher.digest()).decode()
            if not hmac.compare_digest(expected, self._received[name]):
                raise SignatureMismatch()

    # hooks -----------------------------------------------------------------------------------

    def _chunk_start(self, size: int, sig: str | None, line: bytes) -> None:
        raise NotImplementedError

    def _data(self, data: memoryview) -> None:
        raise NotImplementedError

    def _chunk_end(self) -> None:
        raise NotImplementedError

    def _final_chunk(self, sig: str | None, line: bytes) -> None:
        raise NotImplementedError

    def _final_bytes(self, line: bytes) -> None:
        """A raw trailer-section line (pass-through writers keep it)."""

    def _end(self) -> None:
        raise NotImplementedError

    def _take(self) -> bytes:
        raise NotImplementedError


# -- the transformers ------------------------------------------------------------------------


class UnsignedTrailerTransformer(_Framing):
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


class SignedChunkTransformer(_Framing):
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

    def _chunk_start(self, size: int, sig: str | None, line: bytes) -> None:
        self._expected = sig or ""
        self._digest = hashlib.sha256()

    def _data(self, data: memoryview) -> None:
        self._digest.update(data)
        while data:
            take = min(OUT_CHUNK - len(self._pending), len(data))
            self._pending += data[:take]
            data = data[take:]
            if len(self._pending) == OUT_CHUNK:
                self._emit_chunk()

    def _chunk_end(self) -> None:
        self._check(self._in.chunk(self._digest.hexdigest()), self._expected)

    def _final_chunk(self, sig: str | None, line: bytes) -> None:
        self._check(self._in.chunk(_EMPTY_SHA256), sig or "")

    def _end(self) -> None:
        if self._trailers:
            sig = self._in.trailer(_canonical_trailers(self._received))
            self._check(sig, self._trailer_sig or "")
        if self._pending:
            self._emit_chunk()
        final = self._up.chunk(_EMPTY_SHA256)
        self._out += f"0;chunk-signature={final}\r\n".encode()
        if self._trailers:
            for name in sorted(self._received):
                self._out += f"{name}:{self._received[name]}\r\n".encode()
            trailer_sig = self._up.trailer(_canonical_trailers(self._received))
            self._out += f"{_TRAILER_SIG}:{trailer_sig}\r\n".encode()
        self._out += b"\r\n"

    def _emit_chunk(self) -> None:
        sig = self._up.chunk(hashlib.sha256(self._pending).hexdigest())
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
