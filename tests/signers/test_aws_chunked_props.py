"""Properties of the aws-chunked re-signer: any payload, any client chunking, any way the
network splits the body: the re-signed body is accepted by the independent reader with the
real key; any flipped byte in the client's body is refused with one of our errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.base import BodyTransformer
from keybroker.signers.sigv4 import chunked
from tests.signers.test_aws_chunked import client_upload, proxy_transform, upstream_decode

VARIANTS = [
    (chunked.SIGNED, None),
    (chunked.SIGNED_TRAILER, "x-amz-checksum-crc32"),
    (chunked.SIGNED_TRAILER, "x-amz-checksum-crc32c"),
    (chunked.SIGNED_TRAILER, "x-amz-checksum-sha1"),
    (chunked.SIGNED_TRAILER, "x-amz-checksum-sha256"),
    (chunked.UNSIGNED_TRAILER, "x-amz-checksum-crc32"),
    (chunked.UNSIGNED_TRAILER, "x-amz-checksum-sha256"),
]

payloads = st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=64), st.integers(1, 3000)),
)
# 65536 is the outgoing chunk size: such an incoming chunk, when it starts a fresh outgoing one,
# has its digest reused for the re-signature (the path must give the same bytes as the others).
sizes = st.lists(st.one_of(st.integers(1, 70000), st.just(65536)), min_size=1, max_size=5)
splits = st.lists(st.integers(1, 9000), min_size=1, max_size=5)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feed(t: BodyTransformer, body: bytes, steps: list[int]) -> bytes:
    out, pos, i = bytearray(), 0, 0
    while pos < len(body):
        step = steps[i % len(steps)]
        out += t.feed(body[pos : pos + step])
        pos, i = pos + step, i + 1
    return bytes(out + t.finish())


@SETTINGS
@given(st.sampled_from(VARIANTS), payloads, sizes, splits)
def test_resigned_body_verifies_with_the_real_key(
    variant: tuple[str, str | None], data: bytes, chunking: list[int], steps: list[int]
) -> None:
    line, trailer = variant
    req, body = client_upload(data, chunking, line, trailer)
    up, t = proxy_transform(req)
    out = _feed(t, body, steps)
    assert upstream_decode(up, out, trailer) == data


@SETTINGS
@given(st.sampled_from(VARIANTS), payloads, sizes, splits, st.data())
def test_any_flipped_byte_is_refused(
    variant: tuple[str, str | None],
    data: bytes,
    chunking: list[int],
    steps: list[int],
    draw: st.DataObject,
) -> None:
    line, trailer = variant
    req, body = client_upload(data, chunking, line, trailer)
    pos = draw.draw(st.integers(0, len(body) - 1), label="position")
    # never 0x20: that would only change the case of a hex digit (the same signature)
    bit = draw.draw(st.sampled_from([1, 2, 4, 8, 16, 64, 128]), label="bit")
    bad = bytearray(body)
    bad[pos] ^= bit
    _, t = proxy_transform(req)
    try:
        _feed(t, bytes(bad), steps)
    except (SignatureMismatch, MalformedSignature):
        return
    raise AssertionError(f"a flipped byte at {pos} was accepted")


def test_reference_and_transformer_agree_on_the_framed_length() -> None:
    """The Content-Length the re-signer announces is the length it writes."""
    for n in (0, 1, 65535, 65536, 65537, 200000):
        data = b"q" * n
        for line, trailer in VARIANTS[:2]:
            req, body = client_upload(data, [30000], line, trailer)
            up, t = proxy_transform(req)
            out = _feed(t, body, [4096])
            assert len(out) == int(up.headers["Content-Length"])
            assert len(out) == chunked.encoded_length(n, [trailer] if trailer else [])


@pytest.mark.slow
@SETTINGS
@given(
    st.sampled_from(VARIANTS),
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from([b"\r\n", b"0\r\n", b"10;chunk-signature=", b"a" * 64, b"x-amz-"]),
        ),
        max_size=12,
    ),
)
def test_arbitrary_bytes_only_ever_raise_our_errors(
    variant: tuple[str, str | None], parts: list[bytes]
) -> None:
    line, trailer = variant
    req, _ = client_upload(b"abc", [3], line, trailer)
    _, t = proxy_transform(req)
    try:
        for part in parts:
            t.feed(part)
        t.finish()
    except (SignatureMismatch, MalformedSignature):
        return
