"""aws-chunked bodies: AWS's published examples, re-signing checked by the independent reader
in ``test_aws_chunked_ref``, botocore's own writer, tampering, framing errors, bounded memory."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import replace
from typing import Any

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.proxy import forwarding
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import BodyPolicy, BodyTransformer, ParsedAuth, SigningRequest
from keybroker.signers.sigv4 import chunked
from tests.signers import test_aws_chunked_ref as ref
from tests.signers.test_aws_helpers import credential

VECTORS = ref.VECTORS
EXAMPLE = credential(VECTORS["credentials"]["access_key"], VECTORS["credentials"]["secret_key"])
EXAMPLE_TIME = dt.datetime(2013, 5, 24, tzinfo=dt.UTC)
PROXY = credential("AKIDPROXYCHUNK", "proxy-chunk-secret")
REAL = credential("AKIAREALCHUNK", "real-chunk-secret")
SIGNED_AT = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
LATER = dt.datetime(2024, 5, 6, 7, 9, 30, tzinfo=dt.UTC)
CHUNKED_HEADERS = (
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length"
)


def _run(t: BodyTransformer, body: bytes, step: int) -> bytes:
    out = b"".join(t.feed(body[i : i + step]) for i in range(0, len(body), step))
    return out + t.finish()


def _example_request(case: dict[str, Any]) -> SigningRequest:
    headers = CIMultiDict(case["headers"])
    host = headers.pop("Host")
    headers["Authorization"] = case["authorization"]
    return SigningRequest(case["method"], host, case["path"], "", headers)


def _example_body(case: dict[str, Any], trailer_lines: bytes = b"") -> bytes:
    sigs = case["chunk_signatures"]
    body = b""
    for size, sig in zip(case["chunk_sizes"], sigs, strict=False):
        body += f"{size:x};chunk-signature={sig}\r\n".encode() + b"a" * size + b"\r\n"
    return body + f"0;chunk-signature={sigs[-1]}\r\n".encode() + trailer_lines + b"\r\n"


# -- AWS's published example -----------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 7, 1000, 65536, 10**6])
def test_published_example_verifies_and_resigns_to_itself(step: int) -> None:
    """Same key, same time: the re-signed request must be AWS's example, byte for byte."""
    case = VECTORS["cases"][0]
    req = _example_request(case)
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.STREAMING
    SIGNER.verify(req, auth, EXAMPLE, None)
    up = req.copy()
    t = resign_chunked(up, auth, EXAMPLE, EXAMPLE, EXAMPLE_TIME)
    assert up.headers["Authorization"].endswith("Signature=" + case["seed"])
    assert up.headers["Content-Length"] == "66824"
    body = _example_body(case)
    assert _run(t, body, step) == body


def test_published_trailer_example_verifies_and_resigns_to_itself() -> None:
    case = VECTORS["cases"][1]
    auth = _parsed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", 66560, case["trailer"])
    state = _with_signature(auth, case["seed"], "20130524T000000Z")
    auth = replace(auth, state=state, region="us-east-1", service="s3")
    lines = f"{case['trailer']}:{case['trailer_value']}\r\n"
    lines += f"x-amz-trailer-signature:{case['trailer_signature']}\r\n"
    body = _example_body(case, lines.encode())
    t = SIGNER.body_transformer(auth, EXAMPLE, EXAMPLE, case["seed"], EXAMPLE_TIME)
    assert t is not None
    assert _run(t, body, 4096) == body
    # a blank line between the zero-size chunk and the trailers, as some writers send it
    t = SIGNER.body_transformer(auth, EXAMPLE, EXAMPLE, case["seed"], EXAMPLE_TIME)
    assert t is not None
    quirky = body.replace(b"\r\nx-amz-checksum", b"\r\n\r\nx-amz-checksum")
    assert _run(t, quirky, 4096) == body
    assert chunked.encoded_length(66560, [case["trailer"]]) == len(body)


def _parsed(line: str, decoded: int, trailer: str | None = None) -> ParsedAuth:
    headers = {"x_amz_content_sha256": line, "x_amz_decoded_content_length": str(decoded)}
    if trailer:
        headers["x_amz_trailer"] = trailer
    req = _request(**headers)
    return SIGNER.parse(req)


def _with_signature(auth: ParsedAuth, sig: str, timestamp: str) -> object:
    return replace(auth.state, signature=sig, timestamp=timestamp)  # type: ignore[type-var]


# -- re-signing with another key, checked by the independent reader --------------------------


def _request(**headers: str) -> SigningRequest:
    h: CIMultiDict[str] = CIMultiDict(
        {"X-Amz-Date": SIGNED_AT.strftime("%Y%m%dT%H%M%SZ"), "Content-Encoding": "aws-chunked"}
    )
    for k, v in headers.items():
        h[k.replace("_", "-")] = v
    signed = CHUNKED_HEADERS if "Content-Length" in h else "host;x-amz-content-sha256;x-amz-date"
    if "x-amz-trailer" in h:
        signed += ";x-amz-trailer"
    h["Authorization"] = (
        "AWS4-HMAC-SHA256 Credential=AKIDPROXYCHUNK/20240506/us-east-1/s3/aws4_request, "
        f"SignedHeaders={signed}, Signature={'0' * 64}"
    )
    return SigningRequest("PUT", "bucket.s3.amazonaws.com", "/key.bin", "", h)


def client_upload(
    data: bytes, sizes: list[int], line: str, trailer: str | None = None
) -> tuple[SigningRequest, bytes]:
    """A request signed with PROXY the way an SDK does it: seed, then chunks chained on it."""
    headers = {"x_amz_content_sha256": line, "x_amz_decoded_content_length": str(len(data))}
    if trailer:
        headers["x_amz_trailer"] = trailer
    req = _request(**headers, Content_Length="0")
    if line == chunked.UNSIGNED_TRAILER:
        body = ref.encode_unsigned(data, sizes, trailer or "")
    else:  # signatures do not change the length: sign with a dummy chain to measure it
        body = ref.encode_signed(data, sizes, _client_chain(""), trailer)
    req.headers["Content-Length"] = str(len(body))
    seed = client_sign(req)
    if line != chunked.UNSIGNED_TRAILER:
        body = ref.encode_signed(data, sizes, _client_chain(seed), trailer)
    return req, body


def _client_chain(seed: str) -> ref.Chain:
    return ref.chain_for("proxy-chunk-secret", "20240506T070809Z", "us-east-1", "s3", seed)


def client_sign(req: SigningRequest) -> str:
    """Sign the seed with PROXY using the reference (as the client's SDK would)."""
    authz = req.headers["Authorization"]
    signed = authz.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {k.lower(): v for k, v in req.headers.items()} | {"host": req.host}
    line = req.headers["x-amz-content-sha256"]
    seed = ref.seed_signature(
        _client_chain(""), ref.canonical_seed(req.method, req.path, headers, signed, line)
    )
    req.headers["Authorization"] = authz.rsplit("=", 1)[0] + "=" + seed
    return seed


def resign_chunked(
    up: SigningRequest, auth: ParsedAuth, proxy: Credential, real: Credential, now: dt.datetime
) -> BodyTransformer:
    """What the proxy does after ``proxy`` verified ``auth``: re-sign ``up`` with ``real`` at
    ``now``, and the chunk re-signer chained from the new seed."""
    resigned = SIGNER.resign(up, auth, real, None, now)
    assert resigned is not None
    t = SIGNER.body_transformer(auth, proxy, real, resigned.seed_signature, now)
    assert t is not None
    return t


def proxy_transform(req: SigningRequest) -> tuple[SigningRequest, BodyTransformer]:
    """What the proxy does before streaming: parse, verify with PROXY, re-sign with REAL;
    the upstream request and the chunk re-signer."""
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, None)
    up = req.copy()
    return up, resign_chunked(up, auth, PROXY, REAL, LATER)


def upstream_decode(up: SigningRequest, body: bytes, trailer: str | None) -> bytes:
    """The upstream's view: the seed and every chunk checked with REAL by the reference."""
    line = up.headers["x-amz-content-sha256"]
    authz = up.headers["Authorization"]
    signed = authz.split("SignedHeaders=")[1].split(",")[0].split(";")
    seed = authz.rsplit("Signature=", 1)[1]
    headers = {k.lower(): v for k, v in up.headers.items()} | {"host": up.host}
    chain = ref.chain_for("real-chunk-secret", "20240506T070930Z", "us-east-1", "s3", seed)
    canonical = ref.canonical_seed("PUT", up.path, headers, signed, line)
    assert ref.seed_signature(chain, canonical) == seed
    assert authz.startswith("AWS4-HMAC-SHA256 Credential=AKIAREALCHUNK/20240506/")
    assert int(up.headers["Content-Length"]) == len(body)
    return ref.decode(body, None if line == chunked.UNSIGNED_TRAILER else chain, trailer)


@pytest.mark.parametrize(
    ("line", "trailer"),
    [
        (chunked.SIGNED, None),
        (chunked.SIGNED_TRAILER, "x-amz-checksum-crc32"),
        (chunked.SIGNED_TRAILER, "x-amz-checksum-crc32c"),
        (chunked.SIGNED_TRAILER, "x-amz-checksum-sha1"),
        (chunked.SIGNED_TRAILER, "x-amz-checksum-sha256"),
        (chunked.UNSIGNED_TRAILER, "x-amz-checksum-sha256"),
        (chunked.UNSIGNED_TRAILER, "x-amz-checksum-crc32c"),
    ],
)
def test_resigned_body_is_accepted_by_the_independent_reader(
    line: str, trailer: str | None
) -> None:
    data = bytes(range(256)) * 900 + b"tail"
    req, body = client_upload(data, [20000, 8192, 100000], line, trailer)
    up, t = proxy_transform(req)
    out = _run(t, body, 3000)
    assert upstream_decode(up, out, trailer) == data
    if line == chunked.UNSIGNED_TRAILER:
        assert out == body  # nothing to re-sign: passed byte for byte


def test_botocore_writer_body_passes_unchanged() -> None:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER exactly as botocore frames it (1 MiB chunks)."""
    data = bytes(range(251)) * 20000
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=Crc32Checksum, checksum_name="x-amz-checksum-crc32"
    )
    body = wrapper.read()
    req, _ = client_upload(data, [65536], chunked.UNSIGNED_TRAILER, "x-amz-checksum-crc32")
    req.headers["Content-Length"] = str(len(body))
    client_sign(req)
    up, t = proxy_transform(req)
    assert up.headers["Content-Length"] == str(len(body))
    assert _run(t, body, 65536) == body
    value = body[-12:-4]  # "...x-amz-checksum-crc32:<8 base64>\r\n\r\n"
    wrong = body[:-12] + (b"AAAAAA==" if value != b"AAAAAA==" else b"AAAAAQ==") + body[-4:]
    up, t = proxy_transform(req)
    with pytest.raises(SignatureMismatch):
        _run(t, wrong, 65536)


# -- tampering and the held-back end ---------------------------------------------------------


def _transformer(line: str = chunked.SIGNED, trailer: str | None = None) -> tuple[Any, bytes]:
    data = b"x" * 300000
    req, body = client_upload(data, [65536], line, trailer)
    _, t = proxy_transform(req)
    return t, body


def test_a_tampered_middle_chunk_fails_at_that_chunk_and_the_end_is_never_sent() -> None:
    t, body = _transformer()
    bad = bytearray(body)
    bad[3 * 65536] ^= 1  # inside the third chunk
    sent = b""
    with pytest.raises(SignatureMismatch) as info:
        for i in range(0, len(bad), 4096):
            sent += t.feed(bytes(bad[i : i + 4096]))
    assert info.value.message == "the request signature does not match"
    assert len(sent) < 3 * 65536 + 4 * 100  # stopped at that chunk, not at the end
    assert b"\r\n0;chunk-signature=" not in sent


def test_the_end_of_the_body_is_held_until_finish() -> None:
    t, body = _transformer(chunked.SIGNED_TRAILER, "x-amz-checksum-sha256")
    fed = t.feed(body)
    assert b"\r\n0;chunk-signature=" not in fed and b"x-amz-checksum-sha256" not in fed
    rest = t.finish()
    assert rest.startswith(f"{300000 % 65536:x};chunk-signature=".encode())
    assert rest.endswith(b"\r\n\r\n") and b"x-amz-trailer-signature:" in rest
    t, body = _transformer(chunked.UNSIGNED_TRAILER, "x-amz-checksum-crc32")
    fed = t.feed(body)
    assert body.startswith(fed) and b"0\r\n" not in fed[-20:]
    assert fed + t.finish() == body


@pytest.mark.parametrize(
    ("target", "where"),
    [(b"0;chunk-signature=", "final"), (b"x-amz-trailer-signature:", "trailer")],
)
def test_a_wrong_final_or_trailer_signature_fails(target: bytes, where: str) -> None:
    t, body = _transformer(chunked.SIGNED_TRAILER, "x-amz-checksum-crc32")
    pos = body.index(target) + len(target)
    bad = body[:pos] + (b"1" if body[pos : pos + 1] == b"0" else b"0") + body[pos + 1 :]
    with pytest.raises(SignatureMismatch):
        _run(t, bad, 8192)


def test_a_wrong_checksum_fails_even_when_signed() -> None:
    data = b"y" * 70000
    req, _ = client_upload(data, [65536], chunked.SIGNED_TRAILER, "x-amz-checksum-crc32")
    chain = _client_chain(req.headers["Authorization"].rsplit("=", 1)[1])
    body = bytearray()
    for piece in ref.pieces(data, [65536]):
        body += f"{len(piece):x};chunk-signature={chain.chunk(piece)}\r\n".encode()
        body += piece + b"\r\n"
    body += f"0;chunk-signature={chain.chunk(b'')}\r\n".encode()
    values = {"x-amz-checksum-crc32": "AAAAAA=="}  # signed, but not the body's CRC
    body += b"x-amz-checksum-crc32:AAAAAA==\r\n"
    body += f"x-amz-trailer-signature:{chain.trailer(values)}\r\n\r\n".encode()
    _, t = proxy_transform(req)
    with pytest.raises(SignatureMismatch):
        _run(t, bytes(body), 8192)


# -- framing errors: clear 400s, never another exception ----------------------------------


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"g" + b[1:], "chunk size is not hexadecimal"),
        (lambda b: b"10000;" + b"x" * 300, "line is too long"),
        (lambda b: b.replace(b";chunk-signature=", b";chunk-signaturX=", 1), "chunk-signature"),
        (lambda b: b.replace(b"\r\n", b"\n", 1), "must end with CRLF"),
        (lambda b: b[:65624] + b"XX" + b[65626:], "not followed by CRLF"),
        (lambda b: b + b"more", "bytes after its end"),
        (lambda b: b.replace(b"10000;", b"20000;", 1), "not followed by CRLF"),
    ],
)
def test_broken_framing_is_a_malformed_signature(mangle: Any, message: str) -> None:
    t, body = _transformer()
    with pytest.raises(MalformedSignature, match=message):
        _run(t, mangle(body), 5000)


def test_a_body_cut_short_or_longer_than_declared_is_refused() -> None:
    t, body = _transformer()
    with pytest.raises(MalformedSignature, match="ended before its final chunk"):
        _run(t, body[:-40], 5000)
    for declared, message in (("1600", "shorter than"), ("600", "exceeds")):
        req, body = client_upload(b"z" * 1000, [500], chunked.SIGNED)
        req.headers["x-amz-decoded-content-length"] = declared
        req, body = _resigned_client(req, b"z" * 1000, [500])
        _, t = proxy_transform(req)
        with pytest.raises(MalformedSignature, match=message):
            _run(t, body, 5000)


def _resigned_client(
    req: SigningRequest, data: bytes, sizes: list[int]
) -> tuple[SigningRequest, bytes]:
    seed = client_sign(req)
    return req, ref.encode_signed(data, sizes, _client_chain(seed))


def test_feed_after_finish_is_a_usage_error() -> None:
    t, body = _transformer()
    _run(t, body, 65536)
    with pytest.raises(ValueError, match="after finish"):
        t.feed(b"x")
    with pytest.raises(ValueError, match="twice"):
        t.finish()


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"x_amz_content_sha256": chunked.SIGNED}, "need x-amz-decoded-content-length"),
        (
            {"x_amz_content_sha256": chunked.SIGNED, "x_amz_decoded_content_length": "-1"},
            "must be one whole number",
        ),
        (
            {
                "x_amz_content_sha256": chunked.SIGNED_TRAILER,
                "x_amz_decoded_content_length": "1",
                "x_amz_trailer": "x-amz-meta-x",
            },
            "not a checksum",
        ),
        (
            {
                "x_amz_content_sha256": chunked.SIGNED,
                "x_amz_decoded_content_length": "1",
                "x_amz_trailer": "x-amz-checksum-crc32",
            },
            "only with, a -TRAILER payload",
        ),
        (
            {
                "x_amz_content_sha256": chunked.UNSIGNED_TRAILER,
                "x_amz_trailer": "x-amz-checksum-crc32, x-amz-checksum-crc32",
            },
            "twice",
        ),
    ],
)
def test_parse_refuses_chunked_headers_it_cannot_honour(
    headers: dict[str, str], message: str
) -> None:
    with pytest.raises(MalformedSignature, match=message):
        SIGNER.parse(_request(**headers))


def test_presigned_chunk_signed_upload_is_refused() -> None:
    req = SigningRequest(
        "PUT",
        "bucket.s3.amazonaws.com",
        "/k",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240506%2Fus-east-1%2Fs3%2F"
        "aws4_request&X-Amz-Date=20240506T070809Z&X-Amz-SignedHeaders=host&X-Amz-Signature="
        + "0"
        * 64,
        CIMultiDict({"x-amz-content-sha256": chunked.SIGNED, "x-amz-decoded-content-length": "1"}),
    )
    with pytest.raises(MalformedSignature, match="Authorization header"):
        SIGNER.parse(req)


def test_forwarder_refuses_a_streaming_body_without_a_transformer() -> None:
    auth = _parsed(chunked.SIGNED, 10)
    with pytest.raises(MalformedSignature, match="cannot be re-signed"):
        forwarding._transformer(auth, None)
    assert forwarding._transformer(SIGNER.parse(_request()), None) is None


# -- bounded memory ------------------------------------------------------------------------


def test_one_huge_chunk_streams_out_in_bounded_pieces() -> None:
    """A single 8 MiB client chunk: data leaves as it arrives, never held whole."""
    data = bytes(range(256)) * 32768
    req, body = client_upload(data, [len(data)], chunked.SIGNED)
    up, t = proxy_transform(req)
    pieces = [t.feed(body[i : i + 65536]) for i in range(0, len(body), 65536)]
    assert max(len(p) for p in pieces) <= 2 * (chunked.OUT_CHUNK + 100)
    assert sum(len(p) for p in pieces) > len(data) - 2 * chunked.OUT_CHUNK
    out = b"".join(pieces) + t.finish()
    assert upstream_decode(up, out, None) == data


def test_encoded_length_counts_every_frame() -> None:
    assert chunked.encoded_length(0, []) == len(f"0;chunk-signature={'0' * 64}\r\n\r\n")
    one = len(f"10000;chunk-signature={'0' * 64}\r\n") + 65536 + 2
    final = len(f"0;chunk-signature={'0' * 64}\r\n\r\n")
    assert chunked.encoded_length(65536, []) == one + final
    trailer = len(f"x-amz-checksum-sha256:{'A' * 43}=\r\nx-amz-trailer-signature:{'0' * 64}\r\n")
    assert chunked.encoded_length(65536, ["x-amz-checksum-sha256"]) == one + final + trailer
