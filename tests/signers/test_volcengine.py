"""Volcengine HMAC-SHA256: known-answer vectors, SDK interop both ways, parse errors, resign."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from multidict import CIMultiDict
from volcenginesdkcore.signv4 import SignerV4

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from keybroker.signers.volcengine import SIGNER, canonical_query, canonical_uri
from tests.signers.conformance.base import case_request, load
from tests.signers.volc_upstream import sdk_clock

PROXY = Credential("AKLTproxyKEY", Secret("proxy-secret-value"))
REAL = Credential("AKLTrealKEY", Secret("real-secret-value"), Secret("real-session-token"))
REAL_NO_TOKEN = Credential("AKLTrealKEY", Secret("real-secret-value"))


def at(x_date: str) -> datetime:
    return datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def sdk_sign(
    method: str = "POST",
    host: str = "open.volcengineapi.com",
    query: list[tuple[str, str]] | None = None,
    body: str = '{"Limit": 10}',
    cred: Credential = PROXY,
    region: str = "cn-beijing",
    service: str = "iam",
    content_type: str = "application/json",
    x_date: str | None = None,
) -> tuple[SigningRequest, bytes]:
    """Sign like the SDK does on the wire (its rest client urlencodes the query)."""
    query = query if query is not None else [("Action", "ListUsers"), ("Version", "2018-01-01")]
    headers = {"Host": host, "Content-Type": content_type}
    token = cred.access_token.reveal() if cred.access_token else None
    args = ("/", method, headers, body, None, query, cred.access_key,
            cred.secret_key.reveal(), region, service, token)  # fmt: skip
    if x_date:
        with sdk_clock(x_date):
            SignerV4.sign(*args)
    else:
        SignerV4.sign(*args)
    req = SigningRequest(method, host, "/", urlencode(query), CIMultiDict(headers))
    return req, body.encode()


# --------------------------------------------------------------------------- vectors


DOC_CASES = load("volcengine", "doc.json")


def test_doc_vector_canonical_request() -> None:
    (case,) = DOC_CASES
    assert case["source"].startswith("https://www.volcengine.com/docs/")
    req = case_request(case)
    auth = SIGNER.parse(req)
    assert SIGNER.canonical_request(req, auth, b"") == case["expected"]["canonical_request"]


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "GET", "body": "", "content_type": "application/x-www-form-urlencoded"},
        {"query": [("Action", "X"), ("Version", "1"), ("Name", "sp ace/ü*~+%")]},
        {"host": "127.0.0.1:8080", "service": "ecs", "region": "ap-southeast-1"},
        {"body": "ünïcödé ✓", "method": "PUT", "content_type": "text/plain"},
        {"cred": Credential("AKtok", Secret("s/+=="), Secret("session-token"))},
    ],
    ids=["post", "get", "query", "port", "unicode", "token"],
)
def test_sdk_signs_proxy_creds_we_verify(kwargs: dict[str, Any]) -> None:
    req, body = sdk_sign(**kwargs)
    cred = kwargs.get("cred", PROXY)
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.CLAIMED_SHA256
    assert auth.payload_sha256 == hashlib.sha256(body).hexdigest()
    SIGNER.verify(req, auth, cred, None)


@pytest.mark.parametrize("real", [REAL, REAL_NO_TOKEN], ids=["token", "no-token"])
def test_resign_equals_sdk_with_real_creds(real: Credential) -> None:
    req, body = sdk_sign(host="proxy.example:3888")
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, None)
    up = req.copy()
    up.host = "open.volcengineapi.com"
    now = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    SIGNER.resign(up, auth, real, body, now)
    expected, _ = sdk_sign(cred=real, x_date="20240304T050607Z")
    assert up.headers["Authorization"] == expected.headers["Authorization"]
    assert up.headers["X-Date"] == "20240304T050607Z"
    assert up.headers["Host"] == "open.volcengineapi.com"
    assert up.headers.get("X-Security-Token") == expected.headers.get("X-Security-Token")
    assert up.headers["X-Content-Sha256"] == hashlib.sha256(body).hexdigest()


def test_resign_drops_proxy_token_when_real_has_none() -> None:
    proxy_tok = Credential("AKp", Secret("ps"), Secret("proxy-token"))
    req, body = sdk_sign(cred=proxy_tok)
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL_NO_TOKEN, body, datetime.now(UTC))
    assert "X-Security-Token" not in req.headers
    assert "x-security-token" not in req.headers["Authorization"]
    SIGNER.verify(req, SIGNER.parse(req), REAL_NO_TOKEN, body)


def test_resign_presigned_round_trip() -> None:
    qs = SignerV4.sign_url("/", "GET", [("Action", "ListUsers"), ("Version", "2018-01-01")],
                           PROXY.access_key, PROXY.secret_key.reveal(), "cn-beijing", "iam",
                           "proxy-token", "proxy.example")  # fmt: skip
    req = SigningRequest("GET", "proxy.example", "/", qs)
    auth = SIGNER.parse(req)
    assert auth.in_query and auth.body is BodyPolicy.UNSIGNED and auth.expires == 900
    SIGNER.verify(req, auth, PROXY, None)
    req.host = "open.volcengineapi.com"
    SIGNER.resign(req, auth, REAL, None, datetime(2024, 1, 1, tzinfo=UTC))
    pairs = dict(parse_qsl(req.query))
    assert pairs["X-Credential"] == "AKLTrealKEY/20240101/cn-beijing/iam/request"
    assert pairs["X-Security-Token"] == "real-session-token"
    with sdk_clock("20240101T000000Z"):
        expected = SignerV4.sign_url("/", "GET", [("Action", "ListUsers"),
                                     ("Version", "2018-01-01")], REAL.access_key,
                                     "real-secret-value", "cn-beijing", "iam",
                                     "real-session-token", "open.volcengineapi.com")  # fmt: skip
    assert dict(parse_qsl(expected)) == pairs


def test_presigned_tampering_and_unsigned_params() -> None:
    qs = SignerV4.sign_url("/", "GET", [("Action", "ListUsers"), ("Version", "2018-01-01")],
                           "AKLTproxyKEY", "proxy-secret-value", "cn-beijing", "iam")  # fmt: skip
    tampered = SigningRequest("GET", "h", "/", qs.replace("ListUsers", "DeleteUser"))
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(tampered, SIGNER.parse(tampered), PROXY, None)
    with pytest.raises(MalformedSignature, match="not covered by X-SignedQueries"):
        SIGNER.parse(SigningRequest("GET", "h", "/", qs + "&Extra=1"))
    with pytest.raises(MalformedSignature, match="X-Expires"):
        SIGNER.parse(SigningRequest("GET", "h", "/", qs + "&X-Expires=soon"))


def test_tampering_header_form_fails() -> None:
    req, _ = sdk_sign()
    for mutate in (
        lambda r: setattr(r, "query", r.query.replace("ListUsers", "ListUser5")),
        lambda r: setattr(r, "method", "PUT"),
        lambda r: setattr(r, "path", "/x"),
        lambda r: setattr(r, "host", "evil.example"),
        lambda r: r.headers.__setitem__("Content-Type", "text/plain"),
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, None)


def test_body_policy_follows_claimed_hash() -> None:
    req, body = sdk_sign()
    assert SIGNER.parse(req).body is BodyPolicy.CLAIMED_SHA256
    req.headers["X-Content-Sha256"] = "not-a-hash"
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.BUFFER and auth.payload_sha256 is None
    with pytest.raises(SignatureMismatch):  # a signed header's value changed
        SIGNER.verify(req, auth, PROXY, body)


def test_buffer_policy_verifies_with_body() -> None:
    # A request whose SignedHeaders omit x-content-sha256 and that carries no hash header:
    # key-proxy's platform may drop it; the body itself must then be hashed.
    req, body = sdk_sign()
    auth = SIGNER.parse(req)
    stripped = req.copy()
    del stripped.headers["X-Content-Sha256"]
    SIGNER.resign(stripped, _without(auth, "x-content-sha256"), PROXY, body, datetime.now(UTC))
    again = SIGNER.parse(stripped)
    assert again.body is BodyPolicy.BUFFER
    SIGNER.verify(stripped, again, PROXY, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(stripped, again, PROXY, body + b" ")


def _without(auth: ParsedAuth, header: str) -> ParsedAuth:
    from dataclasses import replace

    state: Any = auth.state
    names = tuple(n for n in state.signed_headers if n != header)
    return replace(auth, body=BodyPolicy.BUFFER, payload_sha256=None,
                   state=replace(state, signed_headers=names))  # fmt: skip


# --------------------------------------------------------------------------- parse errors


def with_auth(value: str, x_date: str = "20240101T000000Z") -> SigningRequest:
    headers = CIMultiDict({"Authorization": value, "X-Date": x_date, "Content-Type": "a/b"})
    return SigningRequest("GET", "open.volcengineapi.com", "/", "Action=A&Version=1", headers)


SIG = "a" * 64
GOOD_CRED = "AK/20240101/cn-beijing/iam/request"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            f"HMAC-SHA256 Credential=AK/20240101/iam, SignedHeaders=host, Signature={SIG}",
            "5 parts separated by '/'",
        ),
        (
            f"HMAC-SHA256 Credential=AK/a/b/c/d/e/f, SignedHeaders=host, Signature={SIG}",
            "got 7 part",
        ),
        (
            f"HMAC-SHA256 Credential=AK/2024011/cn/iam/request, SignedHeaders=host, Signature={SIG}",  # noqa: E501
            "YYYYMMDD",
        ),
        (
            f"HMAC-SHA256 Credential=AK/20240101/cn/iam/req, SignedHeaders=host, Signature={SIG}",
            "end with '/request'",
        ),
        (
            f"HMAC-SHA256 Credential=/20240101/cn/iam/request, SignedHeaders=host, Signature={SIG}",
            "access key",
        ),
        (
            f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=Host, Signature={SIG}",
            "lower-case header names",
        ),
        (f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;host, Signature={SIG}", "twice"),
        (
            f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;x-missing, Signature={SIG}",
            "'x-missing' is missing",
        ),
        (
            f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host, Signature={SIG[:-1]}Z",
            "64 lower-case hex",
        ),
        (f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host", "lacks Signature"),
        (
            f"HMAC-SHA256 Credential={GOOD_CRED}, Credential={GOOD_CRED}, Signature={SIG}",
            "Credential twice",
        ),
        (f"HMAC-SHA256 Credential={GOOD_CRED}, Foo=bar, Signature={SIG}", "fields must be"),
        (
            f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host, Signature={SIG}",
            "must start with",
        ),
        ("HMAC-SHA256 " + "x" * 9000, "longer than"),
        ("HMAC-SHA256 ", "fields must be"),
    ],
)
def test_malformed_authorization(auth: str, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(with_auth(auth))
    assert message in str(exc.value)
    assert SIG[:20] not in str(exc.value)
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("x_date", "message"),
    [
        ("2024-01-01T00:00:00Z", "YYYYMMDDTHHMMSSZ"),
        ("20241301T000000Z", "not a valid date"),
        ("20240102T000000Z", "differ"),
        ("\uff12\uff10\uff12\uff14\uff10\uff11\uff10\uff11T000000Z", "YYYYMMDDTHHMMSSZ"),
    ],
)
def test_malformed_x_date(x_date: str, message: str) -> None:
    auth = f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host, Signature={SIG}"
    with pytest.raises(MalformedSignature, match=message):
        SIGNER.parse(with_auth(auth, x_date))


def test_missing_pieces() -> None:
    auth = f"HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host, Signature={SIG}"
    no_date = with_auth(auth)
    del no_date.headers["X-Date"]
    with pytest.raises(MalformedSignature, match="X-Date is missing"):
        SIGNER.parse(no_date)
    twice = with_auth(auth)
    twice.headers.add("X-Date", "20240101T000000Z")
    with pytest.raises(MalformedSignature, match="X-Date appears more than once"):
        SIGNER.parse(twice)
    two_actions = with_auth(auth)
    two_actions.query = "Action=A&Action=B"
    with pytest.raises(MalformedSignature, match="'Action' appears more than once"):
        SIGNER.parse(two_actions)
    with pytest.raises(MalformedSignature, match="no Authorization"):
        SIGNER.parse(SigningRequest("GET", "h", "/", "Action=A"))


# --------------------------------------------------------------------------- misc


def test_detect() -> None:
    req, _ = sdk_sign()
    assert SIGNER.detect(req)
    qs = SignerV4.sign_url("/", "GET", [("Action", "A")], "AK", "SK", "cn-beijing", "iam")
    assert SIGNER.detect(SigningRequest("GET", "h", "/", qs))
    aws = CIMultiDict({"Authorization": "AWS4-HMAC-SHA256 Credential=AK/x"})
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "", aws))
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "X-Amz-Signature=1&X-Amz-Algorithm=A"))


AUTODRIVING = "cn-beijing-autodriving"


@pytest.mark.parametrize(
    ("service", "region", "host"),
    [
        ("iam", "cn-beijing", "open.volcengineapi.com"),
        ("ecs", "cn-shanghai", "open.volcengineapi.com"),
        ("ecs", "ap-southeast-3", "ecs.ap-southeast-3.volcengineapi.com"),
        ("auto_scaling", "cn-beijing-autodriving", f"auto-scaling.{AUTODRIVING}.volcengineapi.com"),
        ("iam", "ap-southeast-2", "iam.volcengineapi.com"),
        ("unknown_svc", "ap-southeast-2", "open.volcengineapi.com"),
    ],
)  # fmt: skip
def test_native_upstream_matches_sdk(service: str, region: str, host: str) -> None:
    from volcenginesdkcore.endpoint.providers.default_provider import DefaultEndpointProvider

    auth = ParsedAuth(access_key="AK", region=region, service=service)
    got = SIGNER.native_upstream(SigningRequest("GET", "h", "/", ""), auth)
    assert got == f"https://{host}"
    assert DefaultEndpointProvider().endpoint_for(service, region).host == host
    assert SIGNER.native_upstream(SigningRequest("GET", "h", "/", ""), ParsedAuth("AK")) is None


def test_signing_key_cache_is_bounded() -> None:
    cache = SIGNER._keys
    for i in range(cache._size + 50):
        cache.get(b"k", f"2024{i:04d}", "r", "s")
    assert len(cache._keys) == cache._size
    assert "k" not in repr(cache).replace("_KeyCache", "")


def test_canonical_helpers() -> None:
    assert canonical_uri("") == "/"
    assert canonical_uri("/a b/%7Ex/%2F") == "/a%20b/~x/%2F"
    assert canonical_query("b=2&a=1&a=0&c") == "a=1&a=0&b=2&c="
    assert canonical_query("q=a+b&r=%FF") == "q=a%20b&r=%FF"
    # Decoding at the byte level: two different invalid sequences stay different.
    assert canonical_query("r=%FE") != canonical_query("r=%FF")


def test_signed_at_is_used_not_now() -> None:
    old = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y%m%dT%H%M%SZ")
    req, _ = sdk_sign(x_date=old)
    assert SIGNER.parse(req).signed_at == at(old)
