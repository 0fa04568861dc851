"""JD Cloud JDCLOUD2/JDCLOUD3: SDK and documentation vectors, interop both ways with the
vendor SDKs (jdcloud-apim-sdk-core for JDCLOUD2, jdcloud-sdk for JDCLOUD3), the Go SDK's
canonical form, parse errors, re-signing and endpoint rules."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, SigningRequest
from keybroker.signers.jingdong import SIGNER, JingdongSigner
from tests.signers.jingdong_upstream import sdk_sign

VECTORS = Path(__file__).parent.parent / "vectors" / "jingdong"
DOC_CASES: list[dict[str, Any]] = json.loads((VECTORS / "doc.json").read_text("utf-8"))
PROXY = Credential("JDC_PROXY_AK", Secret("proxy-secret-value"))
REAL = Credential("JDC_REAL_AK", Secret("real-secret-value"), Secret("real-session-token"))
V2, V3 = "JDCLOUD2-HMAC-SHA256", "JDCLOUD3-HMAC-SHA256"


def at(x_date: str) -> datetime:
    return datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def signed(
    algorithm: str,
    method: str,
    url: str,
    body: str = "",
    cred: Credential = PROXY,
    *,
    x_date: str = "20240304T050607Z",
    nonce: str = "nonce-1",
    headers: dict[str, str] | None = None,
) -> tuple[SigningRequest, bytes]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    if cred.access_token:
        sent["x-jdcloud-security-token"] = cred.access_token.reveal()
    sdk_sign(
        algorithm,
        method,
        url,
        sent,
        body,
        cred.access_key,
        cred.secret_key.reveal(),
        region="cn-north-1",
        service="vm",
        x_date=x_date,
        nonce=nonce,
    )
    parts = urlsplit(url)
    req = SigningRequest(method, parts.netloc, parts.path, parts.query, CIMultiDict(sent))
    return req, body.encode()


# --------------------------------------------------------------------------- vectors


def test_doc_vector_source() -> None:
    (case,) = DOC_CASES
    assert case["source"].startswith("https://docs.jdcloud.com/")
    assert case["request"]["headers"]["x-jdcloud-nonce"] == "ed558a3b-9808-4edb-8597-187bda63a4f2"


# --------------------------------------------------------------------------- interop


URLS = [
    (
        "GET",
        "https://vm.jdcloud-api.com/v1/regions/cn-north-1/instances?pageSize=5&filters.1.name=x",
        "",
    ),
    (
        "POST",
        "https://vm.jdcloud-api.com/v1/regions/cn-north-1/instances/i-1:rebootInstance",
        '{"a": 1}',
    ),
    ("GET", "http://127.0.0.1:3888/v1/regions/cn-north-1/instances?b=2&a=%E4%B8%AD+x", ""),
    ("PUT", "https://vm.jdcloud-api.com/v1/x/y%20z", "ünï"),
]


@pytest.mark.parametrize("algorithm", [V2, V3])
@pytest.mark.parametrize(("method", "url", "body"), URLS)
@pytest.mark.parametrize("real", [REAL, Credential("JDC_REAL_AK", Secret("r"))], ids=["tok", "no"])
def test_sdk_signs_proxy_creds_we_verify_and_resign_equals_sdk(
    algorithm: str, method: str, url: str, body: str, real: Credential
) -> None:
    req, raw = signed(algorithm, method, url, body)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, raw)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(PROXY.access_key, Secret("nope")), raw)
    up = req.copy()
    up.host = "vm.jdcloud-api.com"
    JingdongSigner(nonce=lambda: "fresh-nonce").resign(
        up, auth, real, raw, datetime(2024, 3, 4, 9, 9, 9, tzinfo=UTC)
    )
    target = up.path + (f"?{up.query}" if up.query else "")
    expected, _ = signed(
        algorithm,
        method,
        f"https://vm.jdcloud-api.com{target}",
        body,
        real,
        x_date="20240304T090909Z",
        nonce="fresh-nonce",
    )
    assert up.headers["Authorization"] == expected.headers["Authorization"]
    assert up.headers.get("x-jdcloud-security-token") == (
        real.access_token.reveal() if real.access_token else None
    )
    again = SIGNER.parse(up)
    SIGNER.verify(up, again, real, raw)


def _go_style(req: SigningRequest, sk: str, x_date: str) -> str:
    """The Go SDK's JDCLOUD2 signature, written from its description: path and query exactly
    as sent (unsorted), every header except Authorization/User-Agent signed, sorted."""
    names = sorted({"host", *(k.lower() for k in req.headers if k.lower() != "user-agent")})
    lines = "".join(f"{n}:{req.host if n == 'host' else req.headers[n]}\n" for n in names)
    canonical = "\n".join(
        [req.method, req.path, req.query, lines, ";".join(names), hashlib.sha256(b"").hexdigest()]
    )
    scope = f"{x_date[:8]}/cn-north-1/vm/jdcloud2_request"
    to_sign = f"{V2}\n{x_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("JDCLOUD2" + sk).encode()
    for part in (x_date[:8], "cn-north-1", "vm", "jdcloud2_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed_headers = ";".join(names)
    return (
        f"{V2} Credential={PROXY.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


def test_go_sdk_canonical_form_verifies_and_is_kept_when_resigning() -> None:
    """An unsorted query with a ':' path, as the Go SDK (and key-proxy) sign it."""
    x_date = "20240304T050607Z"
    headers = CIMultiDict(
        {
            "Content-Type": "application/json",
            "x-jdcloud-date": x_date,
            "x-jdcloud-nonce": "go-nonce",
        }
    )
    req = SigningRequest("GET", "vm.jdcloud-api.com", "/v1/i-1:describe", "z=1&a=2", headers)
    req.headers["Authorization"] = ""
    del req.headers["Authorization"]
    req.headers["Authorization"] = _go_style(req, "proxy-secret-value", x_date)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, b"")
    assert auth.state.matched == ["raw"]  # type: ignore[attr-defined]
    SIGNER.resign(req, auth, PROXY, b"", at(x_date))
    del req.headers["Authorization"]
    req.headers["Authorization"] = _go_style(req, "proxy-secret-value", x_date)
    SIGNER.verify(req, SIGNER.parse(req), PROXY, b"")


def test_resign_uses_now_and_a_fresh_nonce() -> None:
    req, raw = signed(V2, "GET", "https://vm.jdcloud-api.com/v1/x", x_date="20200101T000000Z")
    auth = SIGNER.parse(req)
    now = datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)
    first, second = req.copy(), req.copy()
    SIGNER.resign(first, auth, REAL, raw, now)
    SIGNER.resign(second, auth, REAL, raw, now)
    assert first.headers["x-jdcloud-date"] == "20250607T080910Z"
    assert first.headers["x-jdcloud-nonce"] != second.headers["x-jdcloud-nonce"]
    assert first.headers["x-jdcloud-nonce"] != req.headers["x-jdcloud-nonce"]
    assert SIGNER.parse(first).signed_at == now


def test_resign_drops_proxy_token_when_real_has_none() -> None:
    proxy_tok = Credential(PROXY.access_key, PROXY.secret_key, Secret("proxy-token"))
    req, raw = signed(V2, "GET", "https://vm.jdcloud-api.com/v1/x", cred=proxy_tok)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, proxy_tok, raw)
    plain = Credential("JDC_REAL_AK", Secret("real"))
    SIGNER.resign(req, auth, plain, raw, datetime.now(UTC))
    assert "x-jdcloud-security-token" not in req.headers
    assert "x-jdcloud-security-token" not in req.headers["Authorization"]
    SIGNER.verify(req, SIGNER.parse(req), plain, raw)


@pytest.mark.parametrize("algorithm", [V2, V3])
def test_tampering_fails(algorithm: str) -> None:
    req, raw = signed(algorithm, "POST", "https://vm.jdcloud-api.com/v1/a:b?x=1", '{"k": 1}')
    SIGNER.verify(req, SIGNER.parse(req), PROXY, raw)
    for mutate in (
        lambda r: setattr(r, "query", "x=2"),
        lambda r: setattr(r, "method", "PUT"),
        lambda r: setattr(r, "path", "/v1/a:c"),
        lambda r: setattr(r, "host", "evil.example"),
        lambda r: r.headers.__setitem__("Content-Type", "text/plain"),
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, raw)
    buffered = SIGNER.parse(req)
    if algorithm == V3:
        assert buffered.body is BodyPolicy.CLAIMED_SHA256
        del req.headers["x-jdcloud-content-sha256"]
        buffered = SIGNER.parse(req)
    assert buffered.body is BodyPolicy.BUFFER
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, buffered, PROXY, raw + b" ")


def test_python_form_not_used_when_a_value_holds_a_raw_equals_sign() -> None:
    """jdcloud-sdk-core drops what follows a second '=': that tail would be unsigned."""
    req, raw = signed(V2, "GET", "https://vm.jdcloud-api.com/v1/x?b=1&a=x=y")
    auth = SIGNER.parse(req)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, raw)


# --------------------------------------------------------------------------- parsing


def _auth(
    alg: str = V2,
    cred: str = "AK/20240101/cn-north-1/vm/jdcloud2_request",
    names: str = "host;x-jdcloud-date;x-jdcloud-nonce",
    sig: str = "a" * 64,
) -> str:
    return f"{alg} Credential={cred}, SignedHeaders={names}, Signature={sig}"


@pytest.mark.parametrize(
    ("authorization", "headers", "query", "message"),
    [
        ("HMAC-SHA256 x", {}, "", "must start with"),
        (_auth(cred="AK/20240101/cn-north-1"), {}, "", "5 parts"),
        (_auth(cred="AK/2024/cn-north-1/vm/jdcloud2_request"), {}, "", "YYYYMMDD"),
        (_auth(cred="AK/20240101/cn-north-1/vm/jdcloud3_request"), {}, "", "jdcloud2_request"),
        (_auth(cred="/20240101/cn-north-1/vm/jdcloud2_request"), {}, "", "access key"),
        (_auth(names="host;x-jdcloud-date"), {}, "", "x-jdcloud-nonce"),
        (_auth(names="Host;x-jdcloud-date;x-jdcloud-nonce"), {}, "", "lower-case"),
        (_auth(names="host;host;x-jdcloud-date;x-jdcloud-nonce"), {}, "", "twice"),
        (_auth(sig="zz"), {}, "", "64 lower-case hex"),
        (_auth() + ", Extra=1", {}, "", "fields must be"),
        (_auth(), {}, "", "'x-jdcloud-date' is missing"),
        (_auth(), {"x-jdcloud-date": "2024"}, "", "YYYYMMDDTHHMMSSZ"),
        (_auth(), {"x-jdcloud-date": "20240102T000000Z"}, "", "differ"),
        (_auth(), {"x-jdcloud-date": "20240101T250000Z"}, "", "not a valid date"),
        (_auth(), {"x-jdcloud-date": "20240101T000000Z"}, "", "'x-jdcloud-nonce' is missing"),
        (
            _auth(V3, "AK/20240101/cn-north-1/vm/jdcloud3_request", "host"),
            {"x-jdcloud-date": "20240101T000000Z"},
            "a=1&flag",
            "unsigned",
        ),
        (
            _auth(V3, "AK/20240101/cn-north-1/vm/jdcloud3_request", "host"),
            {"x-jdcloud-date": "20240101T000000Z"},
            "a=%FF",
            "invalid UTF-8",
        ),
        ("JDCLOUD2-HMAC-SHA256 " + "x" * 9000, {}, "", "longer than"),
    ],
)
def test_malformed(authorization: str, headers: dict[str, str], query: str, message: str) -> None:
    req = SigningRequest(
        "GET",
        "vm.jdcloud-api.com",
        "/",
        query,
        CIMultiDict({"Authorization": authorization, **headers}),
    )
    with pytest.raises(MalformedSignature, match=message) as err:
        SIGNER.parse(req)
    assert err.value.status == 400
    assert "a" * 64 not in str(err.value)


def test_detect_is_specific() -> None:
    def req(value: str) -> SigningRequest:
        return SigningRequest("GET", "h", "/", "", CIMultiDict({"Authorization": value}))

    assert SIGNER.detect(req(_auth())) and SIGNER.detect(req(_auth(V3)))
    for other in ("HMAC-SHA256 Credential=x", "AWS4-HMAC-SHA256 x", "JDCLOUD2 x", ""):
        assert not SIGNER.detect(req(other))
    for vendor in ("aws", "volcengine", "akamai"):
        assert not signers.get(vendor).detect(req(_auth()))
    assert signers.get("jingdong") is SIGNER


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("vm", "https://vm.jdcloud-api.com"),
        ("clouddnsservice", "https://clouddnsservice.jdcloud-api.com"),
        ("a.b", None),
        ("-x", None),
    ],
)
def test_native_upstream(service: str, expected: str | None) -> None:
    cred = f"AK/20240101/cn-north-1/{service}/jdcloud2_request"
    headers = {
        "Authorization": _auth(cred=cred),
        "x-jdcloud-date": "20240101T000000Z",
        "x-jdcloud-nonce": "n",
    }
    req = SigningRequest("GET", "127.0.0.1:1", "/", "", CIMultiDict(headers))
    assert SIGNER.native_upstream(req, SIGNER.parse(req)) == expected
