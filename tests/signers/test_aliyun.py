"""Alibaba Cloud RPC HMAC-SHA1 and ACS3-HMAC-SHA256: known-answer vectors, SDK interop both
ways, parse errors, tampering, re-signing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.aliyun import SIGNER, acs3_canonical_query, rpc_signature, rpc_string_to_sign
from keybroker.signers.base import SigningRequest
from tests.signers.aliyun_upstream import core_clock, sdk_acs3_authorization

VECTORS = Path(__file__).parent.parent / "vectors" / "aliyun"
PROXY = Credential("LTAIproxyKEY", Secret("proxy-secret-value"))
REAL = Credential("LTAIrealKEY", Secret("real-secret-value"), Secret("real-session-token"))
REAL_NO_TOKEN = Credential("LTAIrealKEY", Secret("real-secret-value"))
FORM = "application/x-www-form-urlencoded"
NONCE = "9d1f0e2a3b4c5d6e7f8091a2b3c4d5e6"


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vector_request(case: dict[str, Any]) -> SigningRequest:
    r = case["request"]
    headers = CIMultiDict(r["headers"])
    return SigningRequest(
        r["method"], r["host"], r["path"], r["query"], headers, body=r["body"].encode()
    )


def at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def all_params(req: SigningRequest) -> dict[str, str]:
    params = dict(parse_qsl(req.query, keep_blank_values=True))
    if req.body:
        params.update(parse_qsl(req.body.decode(), keep_blank_values=True))
    return params


# --------------------------------------------------------------------------- SDK signing


def core_sign(
    cred: Credential = PROXY,
    *,
    method: str = "GET",
    params: dict[str, str] | None = None,
    body: dict[str, str] | None = None,
    stamp: str = "2024-03-04T05:06:07Z",
    nonce: str = NONCE,
) -> SigningRequest:
    """An RPC request exactly as aliyun-python-sdk-core puts it on the wire."""
    params = dict(params or {"Action": "DescribeRegions", "Version": "2014-05-26"})
    if cred.access_token:
        params["SecurityToken"] = cred.access_token.reveal()
    with core_clock(stamp, nonce):
        url, _ = rpc_signature_composer.get_signed_url(
            params, cred.access_key, cred.secret_key.reveal(), "JSON", method, dict(body or {})
        )
    headers = CIMultiDict({"Content-Type": FORM} if body else {})
    encoded = urlencode(body).encode() if body else None
    return SigningRequest(method, "proxy.example:3888", "/", url[2:], headers, "http", encoded)


def tea_sign(
    cred: Credential = PROXY,
    *,
    method: str = "POST",
    host: str = "proxy.example:3888",
    path: str = "/",
    query: dict[str, str] | None = None,
    body: str = '{"Name":"x"}',
    content_type: str | None = "application/json; charset=utf-8",
    date: str = "2024-03-04T05:06:07Z",
) -> SigningRequest:
    """An ACS3 request with the headers the tea client sends, signed by the tea SDK."""
    query = query if query is not None else {"RegionId": "cn-hangzhou"}
    payload = hashlib.sha256(body.encode()).hexdigest()
    headers = {
        "host": host,
        "x-acs-version": "2014-05-26",
        "x-acs-action": "RunInstances",
        "user-agent": "AlibabaCloud Python",
        "x-acs-date": date,
        "x-acs-signature-nonce": NONCE,
        "accept": "application/json",
    }
    if content_type:
        headers["content-type"] = content_type
    headers["x-acs-content-sha256"] = payload
    if cred.access_token:
        headers["x-acs-accesskey-id"] = cred.access_key
        headers["x-acs-security-token"] = cred.access_token.reveal()
    headers["Authorization"] = sdk_acs3_authorization(
        method, path, query, headers, payload, cred.access_key, cred.secret_key.reveal()
    )
    return SigningRequest(
        method, host, path, urlencode(query), CIMultiDict(headers), "http", body.encode()
    )


# --------------------------------------------------------------------------- vectors


SDK_CASES = load("sdk.json")
DOC_CASES = load("doc.json")


def test_doc_rpc_string_to_sign_and_signature() -> None:
    (case,) = [c for c in DOC_CASES if c["scheme"] == "rpc-string"]
    assert "developer.aliyun.com" in case["source"]
    pairs = [(k.encode(), v.encode()) for k, v in case["params"].items()]
    to_sign = rpc_string_to_sign(case["method"], pairs)
    assert to_sign == case["expected"]["string_to_sign"]
    secret = case["credential"]["secret_key"].encode()
    assert rpc_signature(secret, to_sign) == case["expected"]["signature"]


def test_doc_acs3_canonical_request() -> None:
    (case,) = [c for c in DOC_CASES if c["name"] == "doc-acs3-run-instances"]
    assert case["source"].startswith("https://www.alibabacloud.com/help/")
    req = vector_request(case)
    auth = SIGNER.parse(req)
    assert SIGNER.string_to_sign(req, auth) == case["expected"]["canonical_request"]


# --------------------------------------------------------------------------- RPC interop


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"params": {"Action": "A", "Version": "1", "Name": "sp ace/ü*~+%&="}},
        {"method": "POST", "body": {"RegionId": "cn-beijing", "Name": "a b+c"}},
        {"cred": Credential("STS.tok", Secret("s/+=="), Secret("sts-token"))},
    ],
    ids=["get", "encoding", "form-body", "sts-token"],
)
def test_core_sdk_signs_proxy_creds_we_verify(kwargs: dict[str, Any]) -> None:
    cred = kwargs.pop("cred", PROXY)
    req = core_sign(cred, **kwargs)
    auth = SIGNER.parse(req)
    assert auth.action == all_params(req)["Action"]
    assert auth.in_query
    SIGNER.verify(req, auth, cred, req.body)


@pytest.mark.parametrize("real", [REAL, REAL_NO_TOKEN], ids=["token", "no-token"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_rpc_resign_equals_core_sdk_with_real_creds(real: Credential, method: str) -> None:
    body = {"InstanceName": "web 01"} if method == "POST" else None
    req = core_sign(method=method, body=body, stamp="2024-01-01T00:00:00Z")
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, req.body)
    up = req.copy()
    up.host = "ecs.cn-hangzhou.aliyuncs.com"
    SIGNER.resign(up, auth, real, req.body, datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC))
    expected = core_sign(real, method=method, body=body)
    assert all_params(up) == all_params(expected)
    assert up.body == expected.body
    assert all_params(up)["SignatureNonce"] == NONCE  # the client's nonce is kept


def test_rpc_resign_drops_proxy_token_when_real_has_none() -> None:
    proxy_tok = Credential("STS.proxy", Secret("ps"), Secret("proxy-token"))
    req = core_sign(proxy_tok)
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL_NO_TOKEN, None, datetime.now(UTC))
    assert "SecurityToken" not in all_params(req)
    SIGNER.verify(req, SIGNER.parse(req), REAL_NO_TOKEN, None)


def test_rpc_credentials_in_body_are_resigned_in_body() -> None:
    (case,) = [c for c in SDK_CASES if c["name"] == "rpc-credentials-in-form-body"]
    req = vector_request(case)
    auth = SIGNER.parse(req)
    assert not auth.in_query
    SIGNER.resign(req, auth, REAL, req.body, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert req.query == ""
    assert req.body is not None
    body = dict(parse_qsl(req.body.decode()))
    assert body["AccessKeyId"] == REAL.access_key
    assert body["SecurityToken"] == "real-session-token"
    assert body["Timestamp"] == "2025-01-02T03:04:05Z"
    SIGNER.verify(req, SIGNER.parse(req), REAL, req.body)


def test_rpc_resign_strips_acs3_token_headers_and_aligns_unsigned_ones() -> None:
    req = core_sign()
    req.headers["x-acs-security-token"] = "proxy-token"
    req.headers["x-acs-action"] = "DeleteInstance"  # not covered by an RPC signature
    req.headers["x-acs-version"] = "2099-01-01"
    SIGNER.resign(req, SIGNER.parse(req), REAL_NO_TOKEN, None, datetime.now(UTC))
    assert "x-acs-security-token" not in req.headers
    assert req.headers["x-acs-action"] == "DescribeRegions"
    assert req.headers["x-acs-version"] == "2014-05-26"


# --------------------------------------------------------------------------- ACS3 interop


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "GET", "body": "", "content_type": None},
        {"query": {"Name": "sp ace/ü*~+%&=", "Empty": ""}},
        {"path": "/clusters/c-1/triggers", "host": "127.0.0.1:8080"},
        {"body": "a=b+c&d=%20", "content_type": FORM},
        {"cred": Credential("STS.tok", Secret("s/+=="), Secret("sts-token"))},
    ],
    ids=["post-json", "get", "query", "roa-path", "form", "sts-token"],
)
def test_tea_sdk_signs_proxy_creds_we_verify(kwargs: dict[str, Any]) -> None:
    cred = kwargs.pop("cred", PROXY)
    req = tea_sign(cred, **kwargs)
    auth = SIGNER.parse(req)
    assert auth.action == "RunInstances"
    assert auth.payload_sha256 == hashlib.sha256(req.body or b"").hexdigest()
    SIGNER.verify(req, auth, cred, req.body)


@pytest.mark.parametrize("real", [REAL, REAL_NO_TOKEN], ids=["token", "no-token"])
def test_acs3_resign_equals_tea_sdk_with_real_creds(real: Credential) -> None:
    req = tea_sign(date="2024-01-01T00:00:00Z")
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, req.body)
    up = req.copy()
    up.host = "ecs.cn-hangzhou.aliyuncs.com"
    SIGNER.resign(up, auth, real, req.body, datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC))
    expected = tea_sign(real, host="ecs.cn-hangzhou.aliyuncs.com")
    assert up.headers["Authorization"] == expected.headers["Authorization"]
    assert up.headers["host"] == "ecs.cn-hangzhou.aliyuncs.com"
    assert up.headers["x-acs-date"] == "2024-03-04T05:06:07Z"
    assert up.headers["x-acs-signature-nonce"] == NONCE
    for name in ("x-acs-security-token", "x-acs-accesskey-id"):
        assert up.headers.get(name) == expected.headers.get(name)


def test_acs3_resign_drops_proxy_token() -> None:
    req = tea_sign(Credential("STS.proxy", Secret("ps"), Secret("proxy-token")))
    SIGNER.resign(req, SIGNER.parse(req), REAL_NO_TOKEN, req.body, datetime.now(UTC))
    assert "x-acs-security-token" not in req.headers
    assert "x-acs-accesskey-id" not in req.headers
    assert "x-acs-security-token" not in req.headers["Authorization"]
    SIGNER.verify(req, SIGNER.parse(req), REAL_NO_TOKEN, req.body)


# --------------------------------------------------------------------------- tampering


def _changed(req: SigningRequest, mutate: Any) -> SigningRequest:
    out = req.copy()
    mutate(out)
    return out


RPC_MUTATIONS = {
    "query-value": lambda r: setattr(r, "query", r.query.replace("DescribeRegions", "DeleteVpc")),
    "method": lambda r: setattr(r, "method", "POST"),
    "extra-param": lambda r: setattr(r, "query", r.query + "&Force=true"),
    "body-param": lambda r: setattr(r, "body", b"RegionId=cn-shanghai&Name=a+b%2Bc"),
}


@pytest.mark.parametrize("name", list(RPC_MUTATIONS))
def test_rpc_tampering_fails(name: str) -> None:
    req = core_sign(method="GET" if name != "body-param" else "POST",
                    body={"RegionId": "cn-beijing", "Name": "a b+c"} if name == "body-param"
                    else None)  # fmt: skip
    changed = _changed(req, RPC_MUTATIONS[name])
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(changed, SIGNER.parse(changed), PROXY, changed.body)


ACS3_MUTATIONS = {
    "query": lambda r: setattr(r, "query", "RegionId=cn-beijing"),
    "method": lambda r: setattr(r, "method", "PUT"),
    "path": lambda r: setattr(r, "path", "/x"),
    "host": lambda r: setattr(r, "host", "evil.example"),
    "header": lambda r: r.headers.__setitem__("x-acs-action", "DeleteInstance"),
    "nonce": lambda r: r.headers.__setitem__("x-acs-signature-nonce", "other"),
    "body": lambda r: setattr(r, "body", b'{"Name":"y"}'),
}


@pytest.mark.parametrize("name", list(ACS3_MUTATIONS))
def test_acs3_tampering_fails(name: str) -> None:
    changed = _changed(tea_sign(), ACS3_MUTATIONS[name])
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(changed, SIGNER.parse(changed), PROXY, changed.body)


def test_acs3_body_hash_header_must_match_body() -> None:
    req = tea_sign()
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, req.body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, b'{"Name":"x"} ')


def test_wrong_access_key_fails() -> None:
    req = core_sign()
    other = Credential("LTAIother", PROXY.secret_key)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, SIGNER.parse(req), other, None)


# --------------------------------------------------------------------------- parse errors


def rpc_query(**over: str | None) -> str:
    params: dict[str, str | None] = {
        "Action": "DescribeRegions",
        "AccessKeyId": "LTAIkey",
        "Signature": "A" * 27 + "=",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "n-1",
        "Timestamp": "2024-01-01T00:00:00Z",
    }
    params.update(over)
    return urlencode({k: v for k, v in params.items() if v is not None})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (rpc_query(Signature="not base64"), "Signature must be a base64 HMAC-SHA1"),
        (rpc_query(Signature="A" * 40), "base64 HMAC-SHA1"),
        (rpc_query(AccessKeyId=""), "AccessKeyId must be 1-256 printable ASCII"),
        (rpc_query(SignatureMethod="HMAC-SHA256"), "SignatureMethod must be HMAC-SHA1"),
        (rpc_query(SignatureMethod=None), "SignatureMethod must be HMAC-SHA1"),
        (rpc_query(SignatureVersion="2.0"), "SignatureVersion must be 1.0"),
        (rpc_query(SignatureNonce=None), "SignatureNonce is missing"),
        (rpc_query(Timestamp=None), "Timestamp is missing"),
        (rpc_query(Timestamp="2024-01-01 00:00:00"), "YYYY-MM-DDTHH:MM:SSZ"),
        (rpc_query(Timestamp="2024-13-01T00:00:00Z"), "not a valid date"),
        (rpc_query() + "&Action=Other", "'Action' appears more than once"),
        ("Action=A&Version=1", "no ACS3 Authorization header"),
        ("&".join(f"p{i}=1" for i in range(1100)) + "&" + rpc_query(), "more than 1024"),
    ],
)
def test_malformed_rpc(query: str, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(SigningRequest("GET", "h", "/", query))
    assert message in str(exc.value)
    assert "A" * 20 not in str(exc.value)
    assert exc.value.status == 400


def test_malformed_rpc_body_and_path() -> None:
    form = CIMultiDict({"Content-Type": FORM})
    with pytest.raises(MalformedSignature, match="path '/'"):
        SIGNER.parse(SigningRequest("GET", "h", "/x", rpc_query()))
    with pytest.raises(MalformedSignature, match="must be application/x-www-form-urlencoded"):
        SIGNER.parse(SigningRequest("POST", "h", "/", rpc_query(), body=b'{"a":1}'))
    with pytest.raises(MalformedSignature, match="not valid UTF-8"):
        SIGNER.parse(SigningRequest("POST", "h", "/", rpc_query(), form, body=b"a=\xff\xfe"))
    with pytest.raises(MalformedSignature, match="'AccessKeyId' appears more than once"):
        SIGNER.parse(SigningRequest("POST", "h", "/", rpc_query(), form, body=b"AccessKeyId=x"))
    # Credentials only in the body are found there.
    auth = SIGNER.parse(SigningRequest("POST", "h", "/", "", form, body=rpc_query().encode()))
    assert auth.access_key == "LTAIkey" and not auth.in_query


SIG = "a" * 64
HEADERS = "host;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce"


def acs3(auth: str, **extra: str) -> SigningRequest:
    headers = CIMultiDict(
        {
            "Authorization": auth,
            "x-acs-date": "2024-01-01T00:00:00Z",
            "x-acs-signature-nonce": "n-1",
            "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
        }
    )
    headers.update(extra)
    return SigningRequest("GET", "ecs.aliyuncs.com", "/", "A=1", headers)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (f"ACS3-HMAC-SM3 Credential=AK,SignedHeaders={HEADERS},Signature={SIG}", "only ACS3"),
        (f"AWS4-HMAC-SHA256 Credential=AK,SignedHeaders={HEADERS},Signature={SIG}", "start with"),
        ("acs LTAIkey:c2lnbmF0dXJl", "ROA 'acs' signatures are not supported"),
        (f"ACS3-HMAC-SHA256 Credential=,SignedHeaders={HEADERS},Signature={SIG}", "access key"),
        (f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={HEADERS},Signature={SIG[:-1]}Z", "hex"),
        (f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={HEADERS}", "lacks Signature"),
        (f"ACS3-HMAC-SHA256 Credential=AK,Credential=AK,Signature={SIG}", "Credential twice"),
        (f"ACS3-HMAC-SHA256 Credential=AK,Foo=bar,Signature={SIG}", "fields must be"),
        (f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=Host,Signature={SIG}", "lower-case"),
        (
            f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;host,Signature={SIG}",
            "lists a header twice",
        ),
        (
            f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=host;x-acs-date,Signature={SIG}",
            "must include x-acs-content-sha256",
        ),
        (
            f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={HEADERS};x-acs-x,Signature={SIG}",
            "'x-acs-x' must appear exactly once",
        ),
        ("ACS3-HMAC-SHA256 " + "x" * 9000, "longer than"),
        ("ACS3-HMAC-SHA256 ", "fields must be"),
    ],
)
def test_malformed_acs3(auth: str, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(acs3(auth))
    assert message in str(exc.value)
    assert SIG[:20] not in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"x-acs-date": "20240101T000000Z"}, "x-acs-date must be YYYY-MM-DDTHH:MM:SSZ"),
        ({"x-acs-content-sha256": "UNSIGNED-PAYLOAD"}, "64 hex digits"),
        ({"x-acs-security-token": "t"}, "'x-acs-security-token' is present but not signed"),
        ({"Content-Type": "text/plain"}, "'content-type' is present but not signed"),
        ({"x-acs-signature-nonce": "ü"}, "nonce must be"),
    ],
)
def test_malformed_acs3_headers(extra: dict[str, str], message: str) -> None:
    req = acs3(f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={HEADERS},Signature={SIG}")
    for name, value in extra.items():
        req.headers[name] = value
    with pytest.raises(MalformedSignature, match=message):
        SIGNER.parse(req)


def test_acs3_repeated_header_or_query() -> None:
    good = f"ACS3-HMAC-SHA256 Credential=AK,SignedHeaders={HEADERS},Signature={SIG}"
    twice = acs3(good)
    twice.headers.add("x-acs-date", "2024-01-01T00:00:00Z")
    with pytest.raises(MalformedSignature, match="'x-acs-date' must appear exactly once"):
        SIGNER.parse(twice)
    repeated = acs3(good)
    repeated.query = "A=1&A=2"
    with pytest.raises(MalformedSignature, match="'A' appears more than once"):
        SIGNER.parse(repeated)
    two_auth = acs3(good)
    two_auth.headers.add("Authorization", good)
    with pytest.raises(MalformedSignature, match="Authorization appears more than once"):
        SIGNER.parse(two_auth)


# --------------------------------------------------------------------------- detection etc.


def test_detect_is_specific() -> None:
    assert SIGNER.detect(tea_sign())
    assert SIGNER.detect(core_sign())
    assert SIGNER.detect(core_sign(method="POST", body={"A": "1"}))
    form = CIMultiDict({"Content-Type": FORM})
    assert SIGNER.detect(SigningRequest("POST", "h", "/", "", form, body=rpc_query().encode()))
    others = [
        SigningRequest("GET", "h", "/", rpc_query(),
                       CIMultiDict({"Authorization": "AWS4-HMAC-SHA256 Credential=x"})),
        SigningRequest("GET", "h", "/", "", CIMultiDict({"Authorization": "HMAC-SHA256 C=x"})),
        SigningRequest("GET", "b.oss-cn-hangzhou.aliyuncs.com", "/o",
                       "OSSAccessKeyId=k&Expires=1&Signature=abc"),
        SigningRequest("GET", "cvm.tencentcloudapi.com", "/",
                       "Action=A&SecretId=k&Signature=abc&SignatureMethod=HmacSHA1"),
        SigningRequest("POST", "h", "/", "", CIMultiDict({"Content-Type": "text/plain"}),
                       body=rpc_query().encode()),
        SigningRequest("GET", "h", "/", "X-Amz-Signature=a&X-Amz-Credential=b"),
    ]  # fmt: skip
    for req in others:
        assert not SIGNER.detect(req), req


def test_registered_under_aliyun() -> None:
    assert signers.get("aliyun") is SIGNER
    assert SIGNER.body_credentials is True


def test_native_upstream() -> None:
    auth = SIGNER.parse(core_sign())
    req = core_sign()
    assert SIGNER.native_upstream(req, auth) is None
    req.host = "ECS.cn-hangzhou.aliyuncs.com:443"
    assert SIGNER.native_upstream(req, auth) == "https://ecs.cn-hangzhou.aliyuncs.com"
    req.host = "ecs.aliyuncs.com.evil.example"
    assert SIGNER.native_upstream(req, auth) is None


def test_parsed_fields_and_signed_at_not_now() -> None:
    old = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rpc = SIGNER.parse(core_sign(params={"Action": "A", "RegionId": "cn-x"}, stamp=old))
    assert (rpc.signed_at, rpc.action, rpc.region) == (at(old), "A", "cn-x")
    v3 = SIGNER.parse(tea_sign(date=old))
    assert (v3.signed_at, v3.action) == (at(old), "RunInstances")
    assert "secret" not in repr(rpc.state) and "Signature" not in repr(v3.state)
    assert rpc.service is None  # addressed to the proxy: no product in the host
    (case,) = [c for c in SDK_CASES if c["name"] == "acs3-roa-json-body"]
    assert SIGNER.parse(vector_request(case)).service == "cs"


def test_acs3_canonical_query() -> None:
    assert acs3_canonical_query("b=2&a=1&c") == "a=1&b=2&c="
    assert acs3_canonical_query("q=a+b&r=%7e*") == "q=a%20b&r=~%2A"
    # Decoding at the byte level: two different invalid sequences stay different.
    assert acs3_canonical_query("r=%FE") != acs3_canonical_query("r=%FF")


def test_fractional_timestamp_accepted() -> None:
    req = SigningRequest("GET", "h", "/", rpc_query(Timestamp="2024-01-01T00:00:00.123Z"))
    assert SIGNER.parse(req).signed_at == datetime(2024, 1, 1, tzinfo=UTC)


def test_acs3_repeated_action_header_is_refused() -> None:
    """The operation is read from x-acs-action: two values are two readings."""
    req = tea_sign(PROXY)
    req.headers.add("x-acs-action", "DeleteInstance")
    with pytest.raises(MalformedSignature, match="x-acs-action"):
        SIGNER.parse(req)
