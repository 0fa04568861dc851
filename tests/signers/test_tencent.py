"""Tencent Cloud TC3-HMAC-SHA256 and v1: known-answer vectors, SDK interop both ways, parse
errors, re-signing, endpoints."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers import base
from keybroker.signers.base import BodyPolicy, Signer, SigningRequest
from keybroker.signers.tencent import SIGNER
from tests.signers.tencent_upstream import sdk_client, sdk_signed

VECTORS = Path(__file__).parent.parent / "vectors" / "tencent"
PROXY = Credential("AKIDproxyKEY", Secret("proxy-secret-value"))
REAL = Credential("AKIDrealKEY", Secret("real-secret-value"), Secret("real-session-token"))
REAL_NO_TOKEN = Credential("AKIDrealKEY", Secret("real-secret-value"))
PARAMS = {"Limit": 2, "Filters": [{"Name": "instance-name", "Values": ["a b+c/ü&="]}]}
SCHEMES = ["TC3-HMAC-SHA256", "HmacSHA1", "HmacSHA256"]


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vector_request(case: dict[str, Any]) -> SigningRequest:
    r = case["request"]
    body = r["body"].encode() if r["body"] else None
    headers = CIMultiDict(r["headers"])
    return SigningRequest(r["method"], r["host"], r["path"], r["query"], headers, body=body)


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def signed(
    scheme: str = "TC3-HMAC-SHA256",
    method: str = "POST",
    cred: Credential = PROXY,
    host: str = "cvm.tencentcloudapi.com",
    ts: int = 1717171717,
    params: dict[str, Any] | None = None,
) -> SigningRequest:
    token = cred.access_token.reveal() if cred.access_token else None
    client = sdk_client(host, cred.access_key, cred.secret_key.reveal(), token=token,
                        method=method, sign_method=scheme)  # fmt: skip
    return sdk_signed(client, "DescribeInstances", PARAMS if params is None else params, ts)


# --------------------------------------------------------------------------- vectors

SDK_CASES = load("sdk.json")
DOC_CASES = load("doc.json")


def test_doc_vectors_cite_tencent() -> None:
    assert all(c["source"].startswith("https://www.tencentcloud.com/") for c in DOC_CASES)
    v1 = next(c for c in DOC_CASES if c["name"].startswith("doc-v1"))
    from keybroker.signers.tencent import _legacy_string

    req = vector_request(v1)
    pairs = tuple(parse_qsl(req.query))
    assert _legacy_string("GET", req.host, "/", pairs) == v1["expected"]["string_to_sign"]


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("cred", [PROXY, REAL], ids=["plain", "token"])
def test_sdk_signs_we_verify(scheme: str, method: str, cred: Credential) -> None:
    req = signed(scheme, method, cred)
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.BUFFER
    assert auth.in_query == (scheme != "TC3-HMAC-SHA256" and method == "GET")
    SIGNER.verify(req, auth, cred, req.body)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("real", [REAL, REAL_NO_TOKEN], ids=["token", "no-token"])
def test_resign_equals_sdk_with_real_creds(scheme: str, method: str, real: Credential) -> None:
    req = signed(scheme, method, PROXY, host="127.0.0.1:3888")
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, req.body)
    up = req.copy()
    up.host = "cvm.tencentcloudapi.com"
    SIGNER.resign(up, auth, real, req.body, at(1720000000))
    expected = signed(scheme, method, real, ts=1720000000)
    if scheme == "TC3-HMAC-SHA256":
        assert up.headers["Authorization"] == expected.headers["Authorization"]
        assert up.headers["X-TC-Timestamp"] == "1720000000"
        assert up.headers.get("X-TC-Token") == expected.headers.get("X-TC-Token")
        assert up.body == expected.body and up.query == expected.query
    else:
        got = dict(parse_qsl(up.query or (up.body or b"").decode()))
        want = dict(parse_qsl(expected.query or (expected.body or b"").decode()))
        assert got == want  # every parameter, the signature and token included
    SIGNER.verify(up, SIGNER.parse(up), real, up.body)


def test_tc3_hashes_the_body_once_for_both_verify_forms_and_resign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verify tries two canonical forms and re-sign makes a third: one SHA-256 of the body."""
    hashed: list[int] = []

    class Counting:
        @staticmethod
        def sha256(data: bytes = b"") -> Any:
            hashed.append(len(data))
            return hashlib.sha256(data)

    req = signed("TC3-HMAC-SHA256", "POST", PROXY)
    assert req.body
    auth = SIGNER.parse(req)
    monkeypatch.setattr(base, "hashlib", Counting)
    SIGNER.verify(req, auth, PROXY, req.body)
    SIGNER.resign(req.copy(), auth, REAL, req.body, at(1717171800))
    assert hashed == [len(req.body)]


def test_unsigned_payload_skips_the_body() -> None:
    client = sdk_client("cvm.tencentcloudapi.com", "AKIDproxyKEY", "proxy-secret-value")
    req = sdk_signed(client, "DescribeRegions", {}, 1717171717, unsigned_payload=True)
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.UNSIGNED
    SIGNER.verify(req, auth, PROXY, b"anything at all")


def test_documented_lower_case_header_values_verify() -> None:
    """Tencent's docs lower-case signed header values; clients that do so must verify."""
    req = signed()
    req.headers["Content-Type"] = "Application/JSON"  # signed as "application/json"
    SIGNER.verify(req, SIGNER.parse(req), PROXY, req.body)
    req.headers["Content-Type"] = "application/jsonx"
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, SIGNER.parse(req), PROXY, req.body)


def test_proxy_token_required_when_configured() -> None:
    req = signed(cred=REAL)
    auth = SIGNER.parse(req)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(REAL.access_key, REAL.secret_key, Secret("other")),
                      req.body)  # fmt: skip


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tampering_fails(scheme: str) -> None:
    req = signed(scheme, "POST")
    auth = SIGNER.parse(req)
    tampered = (req.body or b"").replace(b"Limit", b"Limjt")
    bad = req.copy()
    bad.body = tampered
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(bad, SIGNER.parse(bad), PROXY, tampered)
    other_host = req.copy()
    other_host.host = "cbs.tencentcloudapi.com"
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(other_host, auth, PROXY, req.body)


# --------------------------------------------------------------------------- parse errors


def tc3(auth: str, **extra: str) -> SigningRequest:
    headers = CIMultiDict(
        {"Authorization": auth, "Content-Type": "application/json", "X-TC-Timestamp": "1551113065"}
    )
    headers.update(extra)
    return SigningRequest("POST", "cvm.tencentcloudapi.com", "/", "", headers, body=b"{}")


GOOD_SIG = "a" * 64
CRED = "Credential=AKID/2019-02-25/cvm/tc3_request"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("TC3-HMAC-SHA256 " + CRED, "lacks SignedHeaders, Signature"),
        (f"TC3-HMAC-SHA256 {CRED}, SignedHeaders=host, Signature={GOOD_SIG}", "content-type"),
        (f"TC3-HMAC-SHA256 Credential=AKID/2019-02-25/cvm, SignedHeaders=content-type;host, "
         f"Signature={GOOD_SIG}", "SecretId/YYYY-MM-DD/service/tc3_request"),
        (f"TC3-HMAC-SHA256 Credential=AKID/2019-02-26/cvm/tc3_request, "
         f"SignedHeaders=content-type;host, Signature={GOOD_SIG}", "UTC date"),
        (f"TC3-HMAC-SHA256 {CRED}, SignedHeaders=content-type;host, Signature=zz",
         "64 lower-case hex"),
        (f"TC3-HMAC-SHA256 {CRED}, SignedHeaders=content-type;host;x-tc-nope, "
         f"Signature={GOOD_SIG}", "'x-tc-nope' is missing"),
        (f"TC3-HMAC-SHA256 {CRED}, Bogus=1", "must be Credential="),
        ("TC3-HMAC-SHA256 " + "x" * 5000, "longer than"),
    ],
)  # fmt: skip
def test_tc3_parse_errors(auth: str, message: str) -> None:
    with pytest.raises(MalformedSignature, match=message) as err:
        SIGNER.parse(tc3(auth))
    assert GOOD_SIG not in str(err.value)


def test_tc3_timestamp_and_query_rules() -> None:
    auth = f"TC3-HMAC-SHA256 {CRED}, SignedHeaders=content-type;host, Signature={GOOD_SIG}"
    with pytest.raises(MalformedSignature, match="Unix seconds"):
        SIGNER.parse(tc3(auth, **{"X-TC-Timestamp": "yesterday"}))
    req = tc3(auth)
    req.query = "Extra=1"
    with pytest.raises(MalformedSignature, match="outside GET"):
        SIGNER.parse(req)
    with pytest.raises(MalformedSignature, match="UNSIGNED-PAYLOAD"):
        SIGNER.parse(tc3(auth, **{"X-TC-Content-SHA256": "abc"}))


def v1(pairs: list[tuple[str, str]], method: str = "GET") -> SigningRequest:
    return SigningRequest(method, "cvm.tencentcloudapi.com", "/", urlencode(pairs))


BASE = [("SecretId", "AKID"), ("Nonce", "1"), ("Timestamp", "1465185768"),
        ("Signature", "EliP9YW3pW28FpsEdkXt/+WcGeI=")]  # fmt: skip


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([*BASE[:1], *BASE[2:]], "Nonce is missing"),
        ([*BASE, ("SignatureMethod", "MD5")], "HmacSHA1 or HmacSHA256"),
        ([*BASE, ("SignatureMethod", "HmacSHA256")], "wrong length for HmacSHA256"),
        ([*BASE[:2], ("Timestamp", "soon"), BASE[3]], "Unix seconds"),
        ([*BASE[:1], ("Nonce", "-1"), *BASE[2:]], "positive integer"),
        ([*BASE[:3], ("Signature", "not base64!")], "Base64"),
        ([*BASE, ("Nonce", "2")], "repeat a parameter"),
    ],
)
def test_v1_parse_errors(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(MalformedSignature, match=message):
        SIGNER.parse(v1(pairs))


def test_v1_body_and_query_must_not_mix() -> None:
    form = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    req = SigningRequest("POST", "h", "/", "Extra=1", form, body=urlencode(BASE).encode())
    with pytest.raises(MalformedSignature, match="must not come with a query"):
        SIGNER.parse(req)
    req = SigningRequest("POST", "h", "/", urlencode(BASE), body=b"smuggled")
    with pytest.raises(MalformedSignature, match="must not have a body"):
        SIGNER.parse(req)


# --------------------------------------------------------------------------- detect, endpoints


def test_detect_is_specific() -> None:
    assert SIGNER.detect(signed())
    assert SIGNER.detect(signed("HmacSHA1", "POST"))
    aws = CIMultiDict({"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "", aws))
    volc = CIMultiDict({"Authorization": "HMAC-SHA256 Credential=x"})
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "", volc))
    # Alibaba RPC also has Signature and Timestamp, but no SecretId/Nonce
    ali = "AccessKeyId=a&Signature=b&SignatureNonce=c&Timestamp=2024-01-01T00:00:00Z"
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", ali))
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", ""))


def test_native_upstream() -> None:
    auth = SIGNER.parse(signed())
    assert SIGNER.native_upstream(signed(), auth) == "https://cvm.tencentcloudapi.com"
    legacy = signed("HmacSHA256")
    assert SIGNER.native_upstream(legacy, SIGNER.parse(legacy)) is None


def test_registered_and_protocol() -> None:
    assert signers.get("tencent") is SIGNER
    assert isinstance(SIGNER, Signer)
    assert SIGNER.public_domains == (".tencentcloudapi.com",)
    assert SIGNER.body_credentials is True


def test_resign_needs_aware_time() -> None:
    req = signed()
    auth = SIGNER.parse(req)
    with pytest.raises(ValueError, match="timezone-aware"):
        SIGNER.resign(req.copy(), auth, REAL, req.body, datetime(2024, 1, 1))


@pytest.mark.parametrize("case", SDK_CASES[:1], ids=lambda c: c["name"])
def test_repeated_action_header_is_refused(case: dict[str, Any]) -> None:
    """The operation is read from X-TC-Action: two values are two readings."""
    req = vector_request(case)
    if "X-TC-Action" not in req.headers:
        pytest.skip("a v1-signed case")
    req.headers.add("X-TC-Action", "TerminateInstances")
    with pytest.raises(MalformedSignature, match="X-TC-Action appears more than once"):
        SIGNER.parse(req)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_v1_parsed_auth_never_shows_the_token_or_signature(method: str) -> None:
    """The v1 state keeps every parameter (to re-sign them), the client's session token and
    its signature among them: its repr shows none."""
    client = sdk_client("cvm.tencentcloudapi.com", "AKIDproxyKEY", "proxy-secret-value",
                        token="proxy-session-token", method=method,
                        sign_method="HmacSHA256")  # fmt: skip
    req = sdk_signed(client, "DescribeThings", {"A": "1"}, 1717171717)
    auth = SIGNER.parse(req)
    signature = dict(parse_qsl(req.query or (req.body or b"").decode()))["Signature"]
    for shown in (repr(auth), repr(auth.state)):
        assert "proxy-session-token" not in shown and signature not in shown
