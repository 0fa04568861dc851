"""The trailers of an aws-chunked body: which checksums they may carry and how each is computed.

``x-amz-trailer`` announces them.  CRC32, SHA-1 and SHA-256 (CRC32C when ``google-crc32c`` or
``crc32c`` is installed) are computed over the decoded payload; CRC64/NVME is left to the
upstream.  A signed trailer section is chained over its canonical form (``name:value\\n``
each, sorted by name).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable
from typing import Protocol

from multidict import CIMultiDict

from keybroker.errors import MalformedSignature

__all__ = ["trailer_names"]

TRAILER_SIG = "x-amz-trailer-signature"
B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


# -- checksums -------------------------------------------------------------------------------


class Hasher(Protocol):
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


def _new_crc32c() -> Hasher | None:
    extend = _crc32c_extend()
    return None if extend is None else _Crc32c(extend)


#: trailer name -> (length of its base64 value, a hasher factory; ``None``: not checked here)
CHECKSUMS: dict[str, tuple[int, Callable[[], Hasher | None]]] = {
    "x-amz-checksum-crc32": (8, _Crc32),
    "x-amz-checksum-crc32c": (8, _new_crc32c),
    # no CRC-64/NVME in the standard library; the upstream checks it (the value is signed)
    "x-amz-checksum-crc64nvme": (12, lambda: None),
    "x-amz-checksum-sha1": (28, hashlib.sha1),
    "x-amz-checksum-sha256": (44, hashlib.sha256),
}


def trailer_names(headers: CIMultiDict[str]) -> tuple[str, ...]:
    """The checksum trailers announced by ``x-amz-trailer``, sorted (canonical order).
    Raises ``MalformedSignature`` for a trailer the proxy cannot re-sign."""
    names: list[str] = []
    for value in headers.getall("x-amz-trailer", []):
        names += [n.strip().lower() for n in value.split(",") if n.strip()]
    for name in names:
        if name not in CHECKSUMS:
            raise MalformedSignature("x-amz-trailer names a trailer that is not a checksum")
    if len(set(names)) != len(names):
        raise MalformedSignature("x-amz-trailer names a trailer twice")
    return tuple(sorted(names))


def canonical_trailers(values: dict[str, str]) -> bytes:
    return "".join(f"{name}:{values[name]}\n" for name in sorted(values)).encode()
