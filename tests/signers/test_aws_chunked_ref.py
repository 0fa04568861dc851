"""An independent aws-chunked writer and reader, written from AWS's S3 documentation
("Transferring payload in multiple chunks" and "Signature calculations for trailing headers"),
sharing no code with keybroker.  The tests below pin it to AWS's published examples; the other
aws-chunked tests use it as the client that signs chunks and as the upstream that checks them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import pytest

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "aws" / "chunked.json").read_text()
)
EMPTY = hashlib.sha256(b"").hexdigest()


class ChunkError(Exception):
    """The reference reader refused a body."""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def derive_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


@dataclass
class Chain:
    """One signature chain: key, request time, scope and the previous signature."""

    key: bytes
    timestamp: str
    scope: str
    prev: str

    def sign(self, kind: str, tail: str) -> str:
        sts = f"AWS4-HMAC-SHA256-{kind}\n{self.timestamp}\n{self.scope}\n{self.prev}\n{tail}"
        self.prev = hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()
        return self.prev

    def chunk(self, data: bytes) -> str:
        return self.sign("PAYLOAD", f"{EMPTY}\n{hashlib.sha256(data).hexdigest()}")

    def trailer(self, trailers: Mapping[str, str]) -> str:
        canonical = "".join(f"{k}:{trailers[k]}\n" for k in sorted(trailers))
        return self.sign("TRAILER", hashlib.sha256(canonical.encode()).hexdigest())


def chain_for(secret: str, timestamp: str, region: str, service: str, seed: str) -> Chain:
    date = timestamp[:8]
    return Chain(
        derive_key(secret, date, region, service),
        timestamp,
        f"{date}/{region}/{service}/aws4_request",
        seed,
    )


def checksum(name: str, data: bytes) -> str:
    """The base64 value of a ``x-amz-checksum-*`` trailer."""
    algo = name.rsplit("-", 1)[1]
    if algo == "crc32":
        raw = (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")
    elif algo == "crc32c":
        raw = google_crc32c.value(data).to_bytes(4, "big")
    else:
        raw = hashlib.new(algo, data).digest()
    return base64.b64encode(raw).decode()


def pieces(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """``data`` cut by ``sizes`` (cycled), the last piece taking the rest."""
    pos, i = 0, 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)])
        yield data[pos : pos + size]
        pos += size
        i += 1


def encode_signed(
    data: bytes, sizes: Sequence[int], chain: Chain, trailer: str | None = None
) -> bytes:
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) body."""
    out = bytearray()
    for piece in pieces(data, sizes):
        out += f"{len(piece):x};chunk-signature={chain.chunk(piece)}\r\n".encode()
        out += piece + b"\r\n"
    out += f"0;chunk-signature={chain.chunk(b'')}\r\n".encode()
    if trailer is not None:
        values = {trailer: checksum(trailer, data)}
        out += f"{trailer}:{values[trailer]}\r\n".encode()
        out += f"x-amz-trailer-signature:{chain.trailer(values)}\r\n".encode()
    return bytes(out + b"\r\n")


def encode_unsigned(data: bytes, sizes: Sequence[int], trailer: str) -> bytes:
    """A STREAMING-UNSIGNED-PAYLOAD-TRAILER body."""
    out = bytearray()
    for piece in pieces(data, sizes):
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += f"0\r\n{trailer}:{checksum(trailer, data)}\r\n\r\n".encode()
    return bytes(out)


def _line(body: bytes, pos: int) -> tuple[bytes, int]:
    end = body.find(b"\r\n", pos)
    if end < 0:
        raise ChunkError("line without CRLF")
    return body[pos:end], end + 2


def decode(body: bytes, chain: Chain | None, trailer: str | None) -> bytes:
    """Check a chunked body (signatures when ``chain`` is given, the checksum trailer when
    ``trailer`` is) and return its payload.  Raises ``ChunkError``."""
    data, pos = bytearray(), 0
    while True:
        header, pos = _line(body, pos)
        size_hex, _, ext = header.partition(b";")
        size = int(size_hex, 16)
        piece = body[pos : pos + size]
        if len(piece) != size:
            raise ChunkError("short chunk")
        if chain is not None:
            want = b"chunk-signature=" + chain.chunk(piece).encode()
            if not hmac.compare_digest(ext, want):
                raise ChunkError("chunk signature")
        elif ext:
            raise ChunkError("unexpected chunk extension")
        data += piece
        if size == 0:
            break
        if body[pos + size : pos + size + 2] != b"\r\n":
            raise ChunkError("chunk data not followed by CRLF")
        pos += size + 2
    trailers: dict[str, str] = {}
    sig = None
    while True:
        line, pos = _line(body, pos)
        if not line:
            break
        name, _, value = line.decode().partition(":")
        if name == "x-amz-trailer-signature":
            sig = value
        else:
            trailers[name] = value
    if pos != len(body):
        raise ChunkError("bytes after the end")
    if trailer is not None:
        if list(trailers) != [trailer] or trailers[trailer] != checksum(trailer, bytes(data)):
            raise ChunkError("checksum trailer")
        if chain is not None and sig != chain.trailer(trailers):
            raise ChunkError("trailer signature")
    elif trailers or sig is not None:
        raise ChunkError("unexpected trailers")
    return bytes(data)


def canonical_seed(
    method: str, path: str, headers: Mapping[str, str], signed: Sequence[str], payload: str
) -> str:
    """The canonical request of a header-signed S3 request with no query (the seed)."""
    lines = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed)
    return f"{method}\n{path}\n\n{lines}\n{';'.join(signed)}\n{payload}"


def seed_signature(chain: Chain, canonical: str) -> str:
    """The signature of a canonical request, keyed like ``chain`` (chain not moved)."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    sts = f"AWS4-HMAC-SHA256\n{chain.timestamp}\n{chain.scope}\n{digest}"
    return hmac.new(chain.key, sts.encode(), hashlib.sha256).hexdigest()


# -- the reference against AWS's published examples -------------------------------------------


def _vector_chain(case: dict[str, object]) -> Chain:
    c = VECTORS["credentials"]
    return chain_for(c["secret_key"], VECTORS["timestamp"], "us-east-1", "s3", str(case["seed"]))


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_reference_writer_reproduces_the_published_chunk_signatures(
    case: dict[str, object],
) -> None:
    data = b"a" * sum(case["chunk_sizes"])  # type: ignore[arg-type]
    trailer = case.get("trailer")
    body = encode_signed(data, case["chunk_sizes"], _vector_chain(case), trailer)  # type: ignore[arg-type]
    for sig in case["chunk_signatures"]:  # type: ignore[attr-defined]
        assert f"chunk-signature={sig}\r\n".encode() in body
    if trailer is not None:
        assert f"{trailer}:{case['trailer_value']}\r\n".encode() in body
        assert f"x-amz-trailer-signature:{case['trailer_signature']}\r\n".encode() in body
    assert decode(body, _vector_chain(case), trailer) == data  # type: ignore[arg-type]


def test_reference_seed_matches_the_published_seed_signature() -> None:
    case = VECTORS["cases"][0]
    chain = _vector_chain(case)
    headers = {k.lower(): v for k, v in case["headers"].items()}
    names = sorted(headers)
    canonical = canonical_seed("PUT", case["path"], headers, names, headers["x-amz-content-sha256"])
    assert seed_signature(chain, canonical) == case["seed"]


def test_reference_reader_refuses_a_flipped_byte() -> None:
    case = VECTORS["cases"][0]
    body = bytearray(encode_signed(b"a" * 66560, case["chunk_sizes"], _vector_chain(case)))
    body[1000] ^= 1
    with pytest.raises(ChunkError):
        decode(bytes(body), _vector_chain(case), None)
