"""Wangsu AK/SK (``CNC-HMAC-SHA256``): vectors and interop both ways with ``wangsu-sdk-python``'s
own signer, tampering, the SDK's coverage gaps, parse errors, and property tests."""

from __future__ import annotations

import contextlib
import json
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.wangsu import SIGNER
from tests.signers.conformance.respell import WHEN, key_of
from tests.signers.conformance.wangsu import replay
from tests.signers.wangsu_upstream import sdk_aksk_headers

VECTORS = Path(__file__).parent.parent / "vectors" / "wangsu"
PROXY = Credential("wsAKproxy", Secret("wangsu-proxy-sk"))
REAL = Credential("wsAKreal", Secret("wangsu-real-sk"))
HOST = "open.chinanetcenter.com"


def sdk_request(
    method: str = "POST",
    uri: str = "/api/v1/refresh",
    body: str | None = '{"a":1}',
    cred: Credential = PROXY,
    host: str = HOST,
    timestamp: int | None = None,
    signed_headers: str | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[SigningRequest, bytes | None]:
    headers = sdk_aksk_headers(
        method,
        uri,
        host,
        body,
        cred.access_key,
        cred.secret_key.reveal(),
        timestamp,
        signed_headers,
        extra,
    )
    parts = urlsplit(uri)
    req = SigningRequest(method, host, parts.path, parts.query, CIMultiDict(headers))
    return req, body.encode() if body is not None else None


# --------------------------------------------------------------------------- vectors

SDK_CASES = json.loads((VECTORS / "sdk.json").read_text(encoding="utf-8"))


def vector(case: dict[str, Any]) -> tuple[SigningRequest, bytes, Credential]:
    r = case["request"]
    req = SigningRequest(r["method"], r["host"], r["path"], r["query"], CIMultiDict(r["headers"]))
    cred = Credential(case["credential"]["access_key"], Secret(case["credential"]["secret_key"]))
    return req, r["body"].encode(), cred


@pytest.mark.parametrize("case", SDK_CASES, ids=lambda c: c["name"])
def test_vector_verifies_and_resign_reproduces(case: dict[str, Any]) -> None:
    req, body, cred = vector(case)
    assert SIGNER.detect(req)
    auth = SIGNER.parse(req)
    assert auth.access_key == cred.access_key
    assert auth.signed_at == datetime.fromtimestamp(case["timestamp"], UTC)
    SIGNER.verify(req, auth, cred, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(cred.access_key, Secret("wrong")), body)
    SIGNER.resign(req, auth, cred, body, auth.signed_at)
    assert req.headers["Authorization"] == case["expected"]["authorization"]


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize(
    ("method", "uri", "body"),
    [
        ("GET", "/api/v1/domain?name=a%20b&x=%E4%B8%AD", None),
        ("POST", "/api/v1/refresh", "{}"),
        ("PUT", "/api/v1/config/1", '{"ü":true}'),
        ("DELETE", "/api/v1/d/2?force=1", None),
    ],
)
def test_sdk_signs_proxy_creds_we_verify_and_resign_equals_sdk(
    method: str, uri: str, body: str | None
) -> None:
    req, raw = sdk_request(method, uri, body, host="127.0.0.1:3888")
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, raw)
    req.host = HOST
    now = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    SIGNER.resign(req, auth, REAL, raw, now)
    expected = sdk_aksk_headers(
        method, uri, HOST, body, REAL.access_key, "wangsu-real-sk", int(now.timestamp())
    )
    for name in ("Authorization", "x-cnc-accessKey", "x-cnc-timestamp"):
        assert req.headers[name] == expected[name]


def test_tampering_fails() -> None:
    req, body = sdk_request(
        "PUT",
        "/api/v1/config/1?v=2",
        '{"on":true}',
        signed_headers="content-type;host;x-cnc-auth-method",
    )
    auth = SIGNER.parse(req)
    for mutate in (
        lambda r: setattr(r, "query", "v=3"),
        lambda r: setattr(r, "path", "/api/v1/config/2"),
        lambda r: setattr(r, "method", "POST"),
        lambda r: setattr(r, "host", "evil.example"),
        lambda r: r.headers.__setitem__("content-type", "text/plain"),
        lambda r: r.headers.__setitem__("x-cnc-auth-method", "OTHER"),
        lambda r: r.headers.__setitem__("x-cnc-timestamp", "1704067201"),
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, b'{"on":false}')


def test_sdk_coverage_gaps_are_reproduced() -> None:
    """The SDK signs no query for POST and no body for DELETE; we verify what it signs."""
    req, body = sdk_request("POST", "/api/v1/refresh?dry=1", "{}")
    req.query = "dry=0"
    SIGNER.verify(req, SIGNER.parse(req), PROXY, body)
    req, _ = sdk_request("DELETE", "/api/v1/d/2", None)
    SIGNER.verify(req, SIGNER.parse(req), PROXY, b"anything")


# --------------------------------------------------------------------------- parse errors

SIG = "0" * 64


def aksk(value: str, **headers: str) -> SigningRequest:
    h = CIMultiDict(
        {
            "Authorization": value,
            "x-cnc-timestamp": "1704067200",
            "content-type": "application/json",
            **headers,
        }
    )
    return SigningRequest("GET", HOST, "/", "", h)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (
            aksk(
                f"CNC-HMAC-SHA256 Credential=ak, SignedHeaders=host, Signature={SIG}",
                **{"x-cnc-timestamp": "soon"},
            ),
            "Unix seconds",
        ),
        (
            aksk(
                f"CNC-HMAC-SHA256 Credential=ak, SignedHeaders=host, Signature={SIG}",
                **{"x-cnc-timestamp": "999999999999"},
            ),
            "Unix seconds",
        ),
        (aksk("CNC-HMAC-SHA256 Credential=ak, SignedHeaders=host"), "lacks Signature"),
        (aksk(f"CNC-HMAC-SHA256 Credential=ak, Foo=1, Signature={SIG}"), "fields must be"),
        (
            aksk(f"CNC-HMAC-SHA256 Credential=, SignedHeaders=host, Signature={SIG}"),
            "Credential is empty",
        ),
        (
            aksk(f"CNC-HMAC-SHA256 Credential=ak, SignedHeaders=Host, Signature={SIG}"),
            "lower-case header names",
        ),
        (aksk(f"CNC-HMAC-SHA256 Credential=ak, SignedHeaders=host;host, Signature={SIG}"), "twice"),
        (aksk("CNC-HMAC-SHA256 Credential=ak, SignedHeaders=host, Signature=XYZ"), "64 lower-case"),
        (
            aksk(
                f"CNC-HMAC-SHA256 Credential=ak, SignedHeaders=host, Signature={SIG}",
                **{"x-cnc-accessKey": "other"},
            ),
            "differ",
        ),
        (aksk("CNC-HMAC-SHA256 " + "x" * 2000), "longer than"),
    ],
)
def test_malformed(req: SigningRequest, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(req)
    assert message in str(exc.value)
    assert exc.value.status == 400


def test_repeated_signed_header_refused() -> None:
    req = aksk(f"CNC-HMAC-SHA256 Credential=ak, SignedHeaders=content-type;host, Signature={SIG}")
    req.headers.add("content-type", "text/plain")
    with pytest.raises(MalformedSignature, match="content-type appears more than once"):
        SIGNER.parse(req)


# --------------------------------------------------------------------------- properties

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
segments = st.text(string.ascii_letters + string.digits + "-_.~", min_size=1, max_size=10)
queries = st.dictionaries(segments, st.text(max_size=8), max_size=3).map(
    lambda d: "&".join(f"{k}={quote(v, safe='')}" for k, v in d.items())
)
secret_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE"])


@PROPS
@given(methods, segments, queries, st.text(max_size=30), secret_text, secret_text)
def test_sdk_signature_verifies_and_round_trips(
    method: str, seg: str, query: str, body: str, sk: str, real_sk: str
) -> None:
    uri = f"/api/{seg}" + (f"?{query}" if query else "")
    cred = Credential("AKprop", Secret(sk))
    req, raw = sdk_request(method, uri, body or None, cred=cred)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, cred, raw)
    real = Credential("AKreal", Secret(real_sk))
    SIGNER.resign(req, auth, real, raw, datetime(2025, 1, 1, tzinfo=UTC))
    SIGNER.verify(req, SIGNER.parse(req), real, raw)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.one_of(st.none(), st.text(max_size=14)))
def test_arbitrary_authorization_is_only_malformed(tail: str, timestamp: str | None) -> None:
    h = CIMultiDict({"Authorization": "CNC-HMAC-SHA256 " + tail})
    if timestamp is not None:
        h["x-cnc-timestamp"] = timestamp
    req = SigningRequest("GET", HOST, "/", "", h)
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), b"")


def test_post_query_is_part_of_the_replay_key() -> None:
    """``CNC-HMAC-SHA256`` signs no POST query: two POSTs of one body to two queries in one
    second have one signature, and are still two requests; the same POST again is a replay."""
    a, b = (replay({"x": v, "y": "1"}, "wangsu-sk-1", WHEN, "POST") for v in ("1", "2"))
    assert a.req.headers["Authorization"] == b.req.headers["Authorization"]
    again = replay({"x": "1", "y": "1"}, "wangsu-sk-1", WHEN, "POST")
    key_a, key_b, key_again = key_of(a, a.req), key_of(b, b.req), key_of(again, again.req)
    assert None not in (key_a, key_b) and key_a != key_b
    assert key_again == key_a
