"""Baidu bce-auth-v1: known-answer vectors, SDK interop both ways, parse errors, resign."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from baidubce.auth import bce_v1_signer
from baidubce.auth.bce_credentials import BceCredentials
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.baidu import SIGNER, canonical_query, canonical_uri
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from tests.signers.baidu_upstream import sdk_sign
from tests.signers.conformance.base import case_cred, case_request, load

PROXY = Credential("bceproxykey", Secret("proxy-secret-value"))
REAL = Credential("bcerealkey", Secret("real-secret-value"), Secret("real-session-token"))
REAL_NO_TOKEN = Credential("bcerealkey", Secret("real-secret-value"))
NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def vector_body(case: dict[str, Any]) -> bytes | None:
    body = case["request"]["body"]
    return None if body is None else body.encode()


def at(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def auth_string(req: SigningRequest) -> str:
    if "Authorization" in req.headers:
        return req.headers["Authorization"]
    return dict(parse_qsl(req.query))["authorization"]


def sdk_expected(req: SigningRequest, cred: Credential, body_md5: bool = False) -> str:
    """What the SDK computes for ``req`` as re-signed: same time, period and header list."""
    _, _, timestamp, expiration, names, _ = auth_string(req).split("/")
    headers = {k.lower().encode(): v.encode() for k, v in req.headers.items()}
    headers[b"host"] = req.host.encode()
    in_query = "Authorization" not in req.headers
    params = {k.encode(): v.encode() for k, v in parse_qsl(req.query, keep_blank_values=True)
              if not (in_query and k == "authorization")}  # fmt: skip
    path = unquote(req.path).encode()
    from baidubce import utils

    return bce_v1_signer.sign(  # type: ignore[no-any-return]
        BceCredentials(cred.access_key.encode(), cred.secret_key.reveal_bytes()),
        req.method.encode(),
        utils.normalize_string(path, False),
        headers,
        params,
        int(at(timestamp).timestamp()),
        int(expiration),
        [n.encode() for n in names.split(";")] if names else None,
    ).decode()


SDK_CASES = load("baidu", "sdk.json")
DOC_CASES = load("baidu", "doc.json")
ALL_CASES = SDK_CASES + DOC_CASES


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c["name"])
def test_vector_signature(case: dict[str, Any]) -> None:
    req, cred = case_request(case), case_cred(case)
    auth = SIGNER.parse(req)
    expected = case["expected"].get("authorization") or case["expected"]["authorization_param"]
    assert auth_string(req) == expected
    assert SIGNER.signature(req, auth, cred) == expected.rsplit("/", 1)[1]
    wrong = Credential(cred.access_key, Secret(cred.secret_key.reveal() + "x"))
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, wrong, vector_body(case))


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c["name"])
def test_vector_resign_agrees_with_sdk(case: dict[str, Any]) -> None:
    """Our re-signed string is what the SDK computes for the same request, time and list."""
    req, cred = case_request(case), case_cred(case)
    auth = SIGNER.parse(req)
    out = req.copy()
    SIGNER.resign(out, auth, cred, vector_body(case), at(case["timestamp"]))
    assert auth_string(out) == sdk_expected(out, cred)
    assert auth_string(out).startswith(f"bce-auth-v1/{cred.access_key}/{case['timestamp']}/")
    again = SIGNER.parse(out)
    assert again.expires == case["expiration"]
    SIGNER.signature(out, again, cred)  # parses and recomputes


def test_doc_vector_and_content_md5() -> None:
    (case,) = DOC_CASES
    assert "cloud.baidu.com" in case["source"]
    req, cred = case_request(case), case_cred(case)
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.BUFFER  # Content-MD5 is signed: the body is checked
    assert auth.service == "bos" and auth.region == "bj"
    with pytest.raises(SignatureMismatch):  # the page's body is unknown; "Example" is not it
        SIGNER.verify(req, auth, cred, b"Example!")
    body = b"Example\n"
    req.headers["Content-Md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    with pytest.raises(SignatureMismatch):  # a changed Content-MD5 breaks the signature
        SIGNER.verify(req, SIGNER.parse(req), cred, body)


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "GET", "body": "", "params": {"maxKeys": "10", "marker": "a b/c"}},
        {"params": {"z": "1", "a": "sp ace/ü*~+%", "Z": "", "a:b": "x"}},
        {"host": "127.0.0.1:8443", "path": "/v1/dir name/ü*.txt"},
        {"body": "ünïcödé ✓", "method": "PUT", "headers": {"content-type": "text/plain"}},
        {"headers_to_sign": ["host", "x-bce-date"], "headers": {"x-bce-meta-a": "b"}},
        {"headers_to_sign": ["host"], "expiration": 60},
        {"headers": {"content-md5": base64.b64encode(hashlib.md5(b"{}").digest()).decode()},
         "body": "{}"},
    ],
    ids=["post", "get", "query", "port-path", "unicode", "explicit", "short", "md5"],
)  # fmt: skip
def test_sdk_signs_proxy_creds_we_verify(kwargs: dict[str, Any]) -> None:
    req, body = sdk_sign(PROXY, **kwargs)
    auth = SIGNER.parse(req)
    assert auth.expires == kwargs.get("expiration", 1800)
    SIGNER.verify(req, auth, PROXY, body)
    token = Credential(PROXY.access_key, PROXY.secret_key, Secret("proxy-token"))
    req, body = sdk_sign(token, **kwargs)
    SIGNER.verify(req, SIGNER.parse(req), token, body)


@pytest.mark.parametrize("real", [REAL, REAL_NO_TOKEN], ids=["token", "no-token"])
@pytest.mark.parametrize("headers_to_sign", [None, ["host", "x-bce-date"]], ids=["default", "list"])
def test_resign_equals_sdk_with_real_creds(
    real: Credential, headers_to_sign: list[str] | None
) -> None:
    req, body = sdk_sign(PROXY, host="proxy.example:3888", headers_to_sign=headers_to_sign)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, body)
    up = req.copy()
    up.host = "bcc.bj.baidubce.com"
    SIGNER.resign(up, auth, real, body, NOW)
    names = auth_string(up).split("/")[4].split(";")
    expected, _ = sdk_sign(real, when=NOW, headers_to_sign=names)
    assert auth_string(up) == auth_string(expected)
    assert up.headers["x-bce-date"] == "2024-03-04T05:06:07Z"
    assert up.headers.get("x-bce-security-token") == expected.headers.get("x-bce-security-token")
    assert "x-bce-date" in names and "host" in names


def test_resign_lists_every_bce_header_and_drops_zero_length() -> None:
    req, body = sdk_sign(PROXY, method="GET", body="", headers={"x-bce-meta-k": "v"},
                         headers_to_sign=["host"])  # fmt: skip
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL, body, NOW)
    names = auth_string(req).split("/")[4].split(";")
    assert names == sorted(["host", "x-bce-date", "x-bce-meta-k", "x-bce-security-token"])
    SIGNER.verify(req, SIGNER.parse(req), REAL, body)


def test_resign_presigned_swaps_token_in_query() -> None:
    (case,) = [c for c in SDK_CASES if c["name"] == "presigned-get-with-token"]
    req = case_request(case)
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL_NO_TOKEN, None, NOW)
    pairs = dict(parse_qsl(req.query))
    assert "x-bce-security-token" not in pairs
    assert pairs["authorization"].startswith("bce-auth-v1/bcerealkey/2024-03-04T05:06:07Z/1800/")
    SIGNER.resign(req, SIGNER.parse(req), REAL, None, NOW)
    assert dict(parse_qsl(req.query))["x-bce-security-token"] == "real-session-token"
    assert auth_string(req) == sdk_expected(req, REAL)


def test_tampering_fails() -> None:
    req, body = sdk_sign(PROXY, params={"limit": "10"})
    for mutate in (
        lambda r: setattr(r, "query", r.query.replace("10", "11")),
        lambda r: setattr(r, "method", "PUT"),
        lambda r: setattr(r, "path", r.path + "x"),
        lambda r: setattr(r, "host", "evil.example"),
        lambda r: r.headers.__setitem__("Content-Type", "text/plain"),
        lambda r: r.headers.__setitem__("x-bce-date", "2024-01-01T00:00:00Z"),
        lambda r: r.headers.__setitem__("x-bce-acl", "public-read"),  # an unsigned x-bce-*
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, body)


def test_body_policies() -> None:
    req, body = sdk_sign(PROXY)
    assert SIGNER.parse(req).body is BodyPolicy.UNSIGNED
    digest = hashlib.sha256(body).hexdigest()
    req, body = sdk_sign(PROXY, headers={"x-bce-content-sha256": digest})
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.CLAIMED_SHA256 and auth.payload_sha256 == digest
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    req, body = sdk_sign(PROXY, headers={"content-md5": md5})
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.BUFFER
    SIGNER.verify(req, auth, PROXY, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, body + b" ")


# --------------------------------------------------------------------------- parse errors


def with_auth(value: str) -> SigningRequest:
    headers = CIMultiDict({"Authorization": value, "Content-Type": "a/b"})
    return SigningRequest("GET", "bcc.bj.baidubce.com", "/", "", headers)


SIG = "a" * 64
TS = "2024-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (f"bce-auth-v1/AK/{TS}/1800/{SIG}", "got 5 part"),
        (f"bce-auth-v1/AK/{TS}/1800/host/x/{SIG}", "got 7 part"),
        (f"bce-auth-v2/AK/{TS}/1800//{SIG}", "must start with"),
        (f"bce-auth-v1//{TS}/1800//{SIG}", "access key"),
        (f"bce-auth-v1/A K/{TS}/1800//{SIG}", "access key"),
        (f"bce-auth-v1/AK/2024-01-01 00:00:00/1800//{SIG}", "YYYY-MM-DDTHH:MM:SSZ"),
        (f"bce-auth-v1/AK/2024-13-01T00:00:00Z/1800//{SIG}", "not a valid date"),
        (f"bce-auth-v1/AK/{TS}/-1//{SIG}", "never expire"),
        (f"bce-auth-v1/AK/{TS}/1e3//{SIG}", "number of seconds"),
        (f"bce-auth-v1/AK/{TS}/1800/Host/{SIG}", "lower-case header names"),
        (f"bce-auth-v1/AK/{TS}/1800/host;host/{SIG}", "twice"),
        (f"bce-auth-v1/AK/{TS}/1800//{SIG[:-1]}Z", "64 lower-case hex"),
        ("bce-auth-v1/" + "x" * 9000, "longer than"),
    ],
)
def test_malformed_authorization(auth: str, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(with_auth(auth))
    assert message in str(exc.value)
    assert SIG[:20] not in str(exc.value)
    assert exc.value.status == 400


def test_ambiguous_and_duplicate_input() -> None:
    value = f"bce-auth-v1/AK/{TS}/1800//{SIG}"
    both = with_auth(value)
    both.query = "authorization=" + value
    with pytest.raises(MalformedSignature, match="both"):
        SIGNER.parse(both)
    two = SigningRequest("GET", "h", "/", f"authorization={value}&authorization={value}")
    with pytest.raises(MalformedSignature, match="more than once"):
        SIGNER.parse(two)
    dup = with_auth(value)
    dup.headers.add("x-bce-date", TS)
    dup.headers.add("x-bce-date", TS)
    with pytest.raises(MalformedSignature, match="'x-bce-date' appears more than once"):
        SIGNER.parse(dup)
    twice = with_auth(value)
    twice.headers.add("Authorization", value)
    with pytest.raises(MalformedSignature, match="Authorization appears more than once"):
        SIGNER.parse(twice)
    with pytest.raises(MalformedSignature, match="no Authorization"):
        SIGNER.parse(SigningRequest("GET", "h", "/", "a=1"))


# --------------------------------------------------------------------------- misc


def test_detect() -> None:
    req, _ = sdk_sign(PROXY)
    assert SIGNER.detect(req)
    (case,) = [c for c in SDK_CASES if c["name"] == "presigned-get"]
    assert SIGNER.detect(case_request(case))
    for value in ("HMAC-SHA256 Credential=AK/x", "SDK-HMAC-SHA256 Access=AK",
                  "AWS4-HMAC-SHA256 Credential=AK/x", "bce-auth-v2/x"):  # fmt: skip
        assert not SIGNER.detect(SigningRequest("GET", "h", "/", "", CIMultiDict(
            {"Authorization": value})))  # fmt: skip
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "authorization=Bearer%20x"))


@pytest.mark.parametrize(
    ("host", "service", "region", "upstream"),
    [
        ("bcc.bj.baidubce.com", "bcc", "bj", "https://bcc.bj.baidubce.com"),
        ("mybucket.su.bcebos.com", "bos", "su", "https://mybucket.su.bcebos.com"),
        ("iam.baidubce.com:443", "iam", None, "https://iam.baidubce.com"),
        ("127.0.0.1:3888", None, None, None),
        ("baidubce.com.evil.example", None, None, None),
    ],
)
def test_host_rules(host: str, service: str | None, region: str | None, upstream: str) -> None:
    req, _ = sdk_sign(PROXY, host=host)
    auth = SIGNER.parse(req)
    assert (auth.service, auth.region) == (service, region)
    assert SIGNER.native_upstream(req, auth) == upstream


def test_canonical_helpers() -> None:
    assert canonical_uri("") == "/"
    assert canonical_uri("/a b/%7Ex/a%2Fb") == "/a%20b/~x/a%2Fb"
    assert canonical_query("b=2&a=1&a=0&c&authorization=x") == "a=0&a=1&b=2&c="
    assert canonical_query("q=a+b&r=%FF") == "q=a%20b&r=%FF"
    assert canonical_query("r=%FE") != canonical_query("r=%FF")


def test_state_type_is_checked() -> None:
    with pytest.raises(TypeError):
        SIGNER.verify(SigningRequest("GET", "h", "/", ""), ParsedAuth("AK"), PROXY, b"")
