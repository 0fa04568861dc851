"""Huawei SDK-HMAC-SHA256: known-answer vectors, SDK interop both ways, parse errors, resign."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from keybroker.signers.huawei import SIGNER, canonical_query, canonical_uri
from tests.signers.conformance.base import case_cred, case_request, load
from tests.signers.huawei_upstream import sdk_sign

PROXY = Credential("HPUAPROXYKEY", Secret("proxy-secret-value"))
REAL = Credential("HPUAREALKEY", Secret("real-secret-value"), Secret("real-session-token"))
REAL_NO_TOKEN = Credential("HPUAREALKEY", Secret("real-secret-value"))
NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def at(sdk_date: str) -> datetime:
    return datetime.strptime(sdk_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


SDK_CASES = load("huawei", "sdk.json")
DOC_CASES = load("huawei", "doc.json")


# --------------------------------------------------------------------------- vectors


def test_doc_vector_intermediate_values() -> None:
    (case,) = DOC_CASES
    assert "support.huaweicloud.com" in case["source"]
    req, cred = case_request(case), case_cred(case)
    auth = SIGNER.parse(req)
    canonical = SIGNER.canonical_request(req, auth, b"")
    assert canonical == case["expected"]["canonical_request"]
    assert (
        hashlib.sha256(canonical.encode()).hexdigest()
        == (case["expected"]["canonical_request_sha256"])
    )
    assert SIGNER.signature(req, auth, cred, b"") == case["expected"]["signature"]


@pytest.mark.parametrize(
    "case",
    [c for c in SDK_CASES if "X-Sdk-Content-Sha256" in c["request"]["headers"]],
    ids=lambda c: c["name"],
)
def test_unsigned_payload_streams_when_length_is_known(case: dict[str, Any]) -> None:
    """With Content-Length the proxy need not buffer an UNSIGNED-PAYLOAD body."""
    req, cred = case_request(case), case_cred(case)
    body = case["request"]["body"].encode()
    assert SIGNER.parse(req).body is BodyPolicy.BUFFER  # emptiness unknown: must look
    req.headers["Content-Length"] = str(len(body))
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.UNSIGNED
    SIGNER.verify(req, auth, cred, None)
    out = req.copy()
    SIGNER.resign(out, auth, cred, None, at(case["sdk_date"]))
    assert out.headers["Authorization"] == case["expected"]["authorization"]


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "GET", "body": "", "query": [("limit", "10"), ("name", "a b")]},
        {"query": [("z", "1"), ("a", "sp ace/ü*~+%"), ("a", "0")]},
        {"host": "127.0.0.1:8443", "path": "/v2/x y/%zz/"},
        {"body": "ünïcödé ✓", "method": "PUT", "content_type": "application/json;charset=utf8"},
        {"body": "a=1", "content_type": "application/x-www-form-urlencoded"},
        {"extra": {"X-Language": "en-us", "X-Client-Token": "t-1"}},
    ],
    ids=["post", "get", "query", "port-path", "unicode", "unsigned-payload", "extra-headers"],
)
def test_sdk_signs_proxy_creds_we_verify(kwargs: dict[str, Any]) -> None:
    req, body = sdk_sign(PROXY, **kwargs)
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.BUFFER
    SIGNER.verify(req, auth, PROXY, body)
    token = Credential(PROXY.access_key, PROXY.secret_key, Secret("proxy-token"))
    req, body = sdk_sign(token, **kwargs)
    SIGNER.verify(req, SIGNER.parse(req), token, body)


@pytest.mark.parametrize("real", [REAL, REAL_NO_TOKEN], ids=["token", "no-token"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_resign_equals_sdk_with_real_creds(real: Credential, content_type: str) -> None:
    req, body = sdk_sign(PROXY, host="proxy.example:3888", content_type=content_type)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, body)
    up = req.copy()
    up.host = "ecs.cn-north-4.myhuaweicloud.com"
    SIGNER.resign(up, auth, real, body, NOW)
    expected, _ = sdk_sign(real, when=NOW, content_type=content_type)
    for name in ("Authorization", "X-Sdk-Date", "Host", "X-Security-Token"):
        assert up.headers.get(name) == expected.headers.get(name), name


def test_resign_drops_proxy_token_when_real_has_none() -> None:
    proxy_tok = Credential("HPUAp", Secret("ps"), Secret("proxy-token"))
    req, body = sdk_sign(proxy_tok)
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL_NO_TOKEN, body, NOW)
    assert "X-Security-Token" not in req.headers
    assert "x-security-token" not in req.headers["Authorization"]
    SIGNER.verify(req, SIGNER.parse(req), REAL_NO_TOKEN, body)


def test_tampering_fails() -> None:
    req, body = sdk_sign(PROXY, query=[("limit", "10")])
    for mutate in (
        lambda r: setattr(r, "query", r.query.replace("10", "11")),
        lambda r: setattr(r, "method", "PUT"),
        lambda r: setattr(r, "path", r.path + "x"),
        lambda r: setattr(r, "host", "evil.example"),
        lambda r: r.headers.__setitem__("Content-Type", "text/plain"),
        lambda r: r.headers.__setitem__("X-Project-Id", "other"),
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, SIGNER.parse(req), PROXY, body + b" ")


def test_claimed_hash_is_checked() -> None:
    body = b'{"a": 1}'
    claimed = hashlib.sha256(body).hexdigest()
    req, _ = sdk_sign(PROXY, body=body.decode(), extra={"X-Sdk-Content-Sha256": claimed})
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.BUFFER
    SIGNER.verify(req, auth, PROXY, body)
    with pytest.raises(SignatureMismatch):  # the signature holds, the body does not
        SIGNER.verify(req, auth, PROXY, b'{"a": 2}')
    req.headers["Content-Length"] = str(len(body))
    streamed = SIGNER.parse(req)
    assert streamed.body is BodyPolicy.CLAIMED_SHA256 and streamed.payload_sha256 == claimed
    SIGNER.verify(req, streamed, PROXY, None)


def test_trailing_slash_is_not_significant() -> None:
    """The canonical URI always ends with '/', so both spellings share one signature."""
    req, body = sdk_sign(PROXY, path="/v1/p/servers")
    other = req.copy()
    other.path = "/v1/p/servers/"
    SIGNER.verify(other, SIGNER.parse(other), PROXY, body)


# --------------------------------------------------------------------------- parse errors


def with_auth(value: str, sdk_date: str | None = "20240101T000000Z") -> SigningRequest:
    headers = CIMultiDict({"Authorization": value, "Content-Type": "a/b"})
    if sdk_date is not None:
        headers["X-Sdk-Date"] = sdk_date
    return SigningRequest("GET", "ecs.cn-north-4.myhuaweicloud.com", "/", "", headers)


SIG = "a" * 64
ALG = "SDK-HMAC-SHA256"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (f"{ALG} Access=AK, SignedHeaders=host", "lacks Signature"),
        (f"{ALG} Access=AK, Access=AK, Signature={SIG}", "Access twice"),
        (f"{ALG} Credential=AK/x, SignedHeaders=host, Signature={SIG}", "fields must be"),
        (f"{ALG} Access=, SignedHeaders=host, Signature={SIG}", "Access is empty"),
        (f"{ALG} Access=A K, SignedHeaders=host, Signature={SIG}", "invalid characters"),
        (f"{ALG} Access=AK, SignedHeaders=Host, Signature={SIG}", "lower-case header names"),
        (f"{ALG} Access=AK, SignedHeaders=host;host, Signature={SIG}", "twice"),
        (f"{ALG} Access=AK, SignedHeaders=host;x-gone, Signature={SIG}", "'x-gone' is missing"),
        (f"{ALG} Access=AK, SignedHeaders=host, Signature={SIG[:-1]}Z", "64 lower-case hex"),
        (f"HMAC-SHA256 Access=AK, SignedHeaders=host, Signature={SIG}", "must start with"),
        (f"{ALG} " + "x" * 9000, "longer than"),
        (f"{ALG} ", "fields must be"),
    ],
)
def test_malformed_authorization(auth: str, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(with_auth(auth))
    assert message in str(exc.value)
    assert SIG[:20] not in str(exc.value)
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("sdk_date", "message"),
    [
        (None, "X-Sdk-Date is missing"),
        ("2024-01-01T00:00:00Z", "YYYYMMDDTHHMMSSZ"),
        ("20241301T000000Z", "not a valid date"),
        ("\uff12\uff10\uff12\uff14\uff10\uff11\uff10\uff11T000000Z", "YYYYMMDDTHHMMSSZ"),
    ],
)
def test_malformed_sdk_date(sdk_date: str | None, message: str) -> None:
    auth = f"{ALG} Access=AK, SignedHeaders=host, Signature={SIG}"
    with pytest.raises(MalformedSignature, match=message):
        SIGNER.parse(with_auth(auth, sdk_date))


def test_duplicates_and_bad_content_hash() -> None:
    auth = f"{ALG} Access=AK, SignedHeaders=host;x-sdk-date, Signature={SIG}"
    twice = with_auth(auth)
    twice.headers.add("X-Sdk-Date", "20240101T000000Z")
    with pytest.raises(MalformedSignature, match="X-Sdk-Date appears more than once"):
        SIGNER.parse(twice)
    two_auth = with_auth(auth)
    two_auth.headers.add("Authorization", auth)
    with pytest.raises(MalformedSignature, match="Authorization appears more than once"):
        SIGNER.parse(two_auth)
    bad_hash = with_auth(auth)
    bad_hash.headers["X-Sdk-Content-Sha256"] = "maybe"
    with pytest.raises(MalformedSignature, match="UNSIGNED-PAYLOAD or 64 hex"):
        SIGNER.parse(bad_hash)
    with pytest.raises(MalformedSignature, match="no Authorization"):
        SIGNER.parse(SigningRequest("GET", "h", "/", ""))


# --------------------------------------------------------------------------- misc


def test_detect() -> None:
    req, _ = sdk_sign(PROXY)
    assert SIGNER.detect(req)
    for value in ("HMAC-SHA256 Credential=AK/x", "AWS4-HMAC-SHA256 Credential=AK/x",
                  "bce-auth-v1/ak/t/1//s", "SDK-HMAC-SM3 Access=AK"):  # fmt: skip
        assert not SIGNER.detect(SigningRequest("GET", "h", "/", "", CIMultiDict(
            {"Authorization": value})))  # fmt: skip
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "X-Amz-Signature=1"))


@pytest.mark.parametrize(
    ("host", "service", "region", "upstream"),
    [
        ("ecs.cn-north-4.myhuaweicloud.com", "ecs", "cn-north-4",
         "https://ecs.cn-north-4.myhuaweicloud.com"),
        ("iam.myhuaweicloud.com", "iam", None, "https://iam.myhuaweicloud.com"),
        ("rds.eu-west-101.myhuaweicloud.eu:443", "rds", "eu-west-101",
         "https://rds.eu-west-101.myhuaweicloud.eu"),
        ("127.0.0.1:3888", None, None, None),
        ("myhuaweicloud.com.evil.example", None, None, None),
    ],
)  # fmt: skip
def test_host_rules(host: str, service: str | None, region: str | None, upstream: str) -> None:
    req, _ = sdk_sign(PROXY, host=host)
    auth = SIGNER.parse(req)
    assert (auth.service, auth.region) == (service, region)
    assert SIGNER.native_upstream(req, auth) == upstream


def test_canonical_helpers() -> None:
    assert canonical_uri("") == "/"
    assert canonical_uri("/a b/%7Ex") == "/a%20b/~x/"
    assert canonical_uri("/a%2Fb") == "/a/b/"  # decoded whole, as the SDK and gateway do
    assert canonical_query("b=2&a=1&a=0&c") == "a=0&a=1&b=2&c="
    assert canonical_query("q=a+b&r=%FF") == "q=a%20b&r=%FF"
    # Sorted on decoded names: ":" (0x3A) sorts after "0" though "%3A" would sort before.
    assert canonical_query("a0=1&a%3A=2") == "a0=1&a%3A=2"
    assert canonical_query("r=%FE") != canonical_query("r=%FF")


def test_state_type_is_checked() -> None:
    with pytest.raises(TypeError):
        SIGNER.verify(SigningRequest("GET", "h", "/", ""), ParsedAuth("AK"), PROXY, b"")
