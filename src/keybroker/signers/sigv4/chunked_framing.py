"""The aws-chunked framing parser: chunk headers, chunk data and the trailer section, read as
they arrive; its subclasses in :mod:`keybroker.signers.sigv4.chunked` say what to send.

At most one partial chunk-header or trailer line is buffered (:data:`MAX_HEADER_LINE` bytes;
the whole trailer section is bounded by :data:`MAX_TRAILER_BYTES`); data passes straight
through.  Every framing error is a :class:`~keybroker.errors.MalformedSignature`; a checksum
that does not match is the opaque :class:`~keybroker.errors.SignatureMismatch`.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Sequence

from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.sigv4.chunked_trailers import B64, CHECKSUMS, TRAILER_SIG, Hasher

__all__ = ["MAX_HEADER_LINE", "MAX_TRAILER_BYTES"]

MAX_HEADER_LINE = 256  # "hex;chunk-signature=<64 hex>\r\n" is under 100 bytes
MAX_TRAILER_BYTES = 4096
SIG_FIELD = b"chunk-signature="
_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_HEX64 = re.compile(rb"[0-9a-fA-F]{64}")

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class Framing:
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
        self._hashers: dict[str, Hasher | None] = {n: CHECKSUMS[n][1]() for n in trailers}
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
            if not ext.startswith(SIG_FIELD) or not _HEX64.fullmatch(ext[len(SIG_FIELD) :]):
                raise MalformedSignature("aws-chunked chunk has no valid chunk-signature")
            sig = ext[len(SIG_FIELD) :].decode().lower()
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
        if name == TRAILER_SIG and self._signed:
            if not _HEX64.fullmatch(value.encode()):
                raise MalformedSignature("x-amz-trailer-signature must be 64 hexadecimal digits")
            self._trailer_sig = value.lower()
            return
        if name not in self._trailers or name in self._received:
            raise MalformedSignature("aws-chunked trailer is not announced by x-amz-trailer")
        if len(value) != CHECKSUMS[name][0] or not B64.fullmatch(value):
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
