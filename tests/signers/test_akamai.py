"""Akamai EdgeGrid: Akamai's published test suite, edgegrid-python interop both ways, parse
errors, re-signing and endpoint rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import requests
from akamai.edgegrid import EdgeGridAuth, edgegrid
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.akamai import SIGNER, AkamaiSigner
from keybroker.signers.base import BodyPolicy, Signer, SigningRequest
from tests.signers.conformance.akamai import (
    DOC,
    DOC_SIGNER,
    body_of,
    cred,
    vector_request,
)
from tests.signers.conformance.base import load

SDK_CASES: list[dict[str, Any]] = load("akamai", "sdk.json")
SETTINGS = DOC["settings"]
HOST = "akab-example0001.luna.akamaiapis.net"


PROXY = cred("akab-proxy-client", "akab-proxy-access", "cHJveHktc2VjcmV0LXZhbHVl")
REAL = cred("akab-real-client", "akab-real-access", "cmVhbC1zZWNyZXQtdmFsdWU=")


# --------------------------------------------------------------------------- published suite


def test_doc_source_is_recorded() -> None:
    assert DOC["source"].startswith("https://github.com/akamai/")
    assert len(DOC["cases"]) >= 10


@pytest.mark.parametrize("case", DOC["cases"], ids=lambda c: c["name"])
def test_published_data_to_sign(case: dict[str, Any]) -> None:
    from keybroker.signers.akamai import data_to_sign

    req = vector_request(case)
    state: Any = DOC_SIGNER.parse(req).state
    data = data_to_sign(
        req,
        state.unsigned,
        body_of(case),
        headers_to_sign=DOC_SIGNER.headers_to_sign,
        max_body=DOC_SIGNER.max_body,
    )
    assert data == case["expected"]["data_to_sign"] + state.unsigned


# --------------------------------------------------------------------------- SDK vectors


def test_sdk_vector_tampering_fails() -> None:
    by_name = {c["name"]: c for c in SDK_CASES}
    post = by_name["post-json"]
    req, body, c = vector_request(post), body_of(post), cred(**post["credential"])
    auth = SIGNER.parse(req)
    for mutate in (
        lambda r: setattr(r, "path", r.path + "x"),
        lambda r: setattr(r, "query", "a=1"),
        lambda r: setattr(r, "host", "akab-other.luna.akamaiapis.net"),
        lambda r: setattr(r, "scheme", "http"),
        lambda r: setattr(r, "method", "PUT"),
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, auth, c, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, c, body + b" ")


def test_body_beyond_max_body_and_put_bodies_are_not_signed() -> None:
    """The scheme's limits, pinned so a change of behaviour is noticed."""
    by_name = {c["name"]: c for c in SDK_CASES}
    big = by_name["post-over-max-body"]
    req, body, c = vector_request(big), body_of(big), cred(**big["credential"])
    assert len(body) > 131072
    SIGNER.verify(req, SIGNER.parse(req), c, body[:131072] + b"tail changed")
    put = by_name["put-unsigned-body"]
    req, c = vector_request(put), cred(**put["credential"])
    SIGNER.verify(req, SIGNER.parse(req), c, b"anything")


# --------------------------------------------------------------------------- live SDK interop


def sdk_prepare(
    method: str,
    url: str,
    body: bytes,
    c: Credential,
    *,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> tuple[SigningRequest, bytes]:
    assert c.client_token and c.access_token and c.client_secret
    auth = EdgeGridAuth(
        client_token=c.client_token.reveal(),
        client_secret=c.client_secret.reveal(),
        access_token=c.access_token.reveal(),
    )
    patches = []
    if timestamp:
        patches.append(mock.patch.object(edgegrid, "eg_timestamp", return_value=timestamp))
    if nonce:
        patches.append(mock.patch.object(edgegrid, "new_nonce", return_value=nonce))
    for p in patches:
        p.start()
    try:
        prepared = requests.Request(method, url, data=body, auth=auth).prepare()
    finally:
        for p in patches:
            p.stop()
    parts = urlsplit(prepared.url)
    headers: CIMultiDict[str] = CIMultiDict(prepared.headers)
    return SigningRequest(
        method, parts.netloc, parts.path, parts.query, headers, parts.scheme
    ), body


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", f"https://{HOST}/papi/v1/groups?a=1&b=x%20y", b""),
        ("POST", f"https://{HOST}/ccu/v3/delete/cpcode", b'{"objects":[1,2]}'),
        ("DELETE", "http://127.0.0.1:3888/identity-management/v3/user/1", b""),
        ("POST", f"https://{HOST}/empty", b""),
    ],
)
def test_sdk_signs_proxy_creds_we_verify_and_resign_matches_sdk(
    method: str, url: str, body: bytes
) -> None:
    req, body = sdk_prepare(method, url, body, PROXY)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, body if auth.body is BodyPolicy.BUFFER else None)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, REAL, body)
    up = req.copy()
    up.scheme, up.host = "https", HOST
    signer = AkamaiSigner(nonce=lambda: "fixed-nonce")
    signer.resign(up, auth, REAL, body, datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    path = up.path + (f"?{up.query}" if up.query else "")
    expected, _ = sdk_prepare(
        method,
        f"https://{HOST}{path}",
        body,
        REAL,
        timestamp="20240506T07:08:09+0000",
        nonce="fixed-nonce",
    )
    assert up.headers["Authorization"] == expected.headers["Authorization"]
    SIGNER.verify(up, SIGNER.parse(up), REAL, body)


def test_resign_uses_fresh_nonce_and_now() -> None:
    req, body = sdk_prepare(
        "GET", f"https://{HOST}/x", b"", PROXY, timestamp="20200101T00:00:00+0000"
    )
    auth = SIGNER.parse(req)
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    first, second = req.copy(), req.copy()
    SIGNER.resign(first, auth, REAL, body, now)
    SIGNER.resign(second, auth, REAL, body, now)
    a1, a2 = SIGNER.parse(first), SIGNER.parse(second)
    assert a1.signed_at == a2.signed_at == now
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert a1.access_key == "akab-real-client"


def test_credential_id_and_fields() -> None:
    signer: Signer = signers.get("akamai")
    assert signer is SIGNER
    assert signer.credential_fields == ("client_token", "access_token", "client_secret")
    assert signer.credential_id(PROXY) == "akab-proxy-client"


def test_wrong_access_token_or_client_token_fails() -> None:
    req, body = sdk_prepare("GET", f"https://{HOST}/x", b"", PROXY)
    auth = SIGNER.parse(req)
    assert PROXY.client_secret is not None and PROXY.client_token is not None
    for other in (
        cred("akab-proxy-client", "akab-other-access", PROXY.client_secret.reveal()),
        cred("akab-other-client", "akab-proxy-access", PROXY.client_secret.reveal()),
        Credential("", Secret(""), client_token=PROXY.client_token),
    ):
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(req, auth, other, body)


def test_resign_without_real_fields_is_malformed() -> None:
    req, body = sdk_prepare("GET", f"https://{HOST}/x", b"", PROXY)
    with pytest.raises(MalformedSignature, match="ClientToken, AccessToken and ClientSecret"):
        SIGNER.resign(req, SIGNER.parse(req), Credential("a", Secret("b")), body, datetime.now(UTC))


# --------------------------------------------------------------------------- parsing


GOOD = (
    "EG1-HMAC-SHA256 client_token=ct;access_token=at;timestamp=20240101T00:00:00+0000;"
    "nonce=n;signature=" + "A" * 43 + "="
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Bearer x", "must start with"),
        ("EG1-HMAC-SHA256 client_token=ct", "must end with ';signature="),
        (GOOD.replace("A" * 43 + "=", "short"), "base64 form of 32 bytes"),
        (GOOD.replace("client_token=ct;", ""), "lacks client_token"),
        (GOOD.replace("nonce=n", "nonce=n;nonce=m"), "nonce appears twice"),
        (GOOD.replace("nonce=n", "extra=1"), "fields must be"),
        (GOOD.replace("nonce=n", "nonce="), "nonce is empty"),
        (GOOD.replace("20240101T00:00:00+0000", "2024-01-01"), "timestamp must be"),
        (GOOD.replace("20240101T00:00:00+0000", "20241301T00:00:00+0000"), "not a valid date"),
        (GOOD.replace("+0000", "+0100"), "timestamp must be"),
        ("EG1-HMAC-SHA256 " + "x" * 5000, "longer than"),
    ],
)
def test_malformed_authorization(value: str, message: str) -> None:
    req = SigningRequest("GET", HOST, "/", "", CIMultiDict({"Authorization": value}))
    with pytest.raises(MalformedSignature, match=message) as err:
        SIGNER.parse(req)
    assert err.value.status == 400
    assert "A" * 43 not in str(err.value)


def test_good_header_parses_and_two_headers_do_not() -> None:
    value = GOOD.replace("client_token=ct", "client_token=akab-ctok").replace("=at", "=akab-atok")
    req = SigningRequest("GET", HOST, "/", "", CIMultiDict({"Authorization": value}))
    auth = SIGNER.parse(req)
    assert (auth.access_key, auth.body, auth.expires) == ("akab-ctok", BodyPolicy.UNSIGNED, None)
    assert "akab" not in repr(auth.state) and "AAAA" not in repr(auth.state)
    req.headers.add("Authorization", value)
    with pytest.raises(MalformedSignature, match="exactly one"):
        SIGNER.parse(req)


def test_detect_is_specific() -> None:
    def req(value: str) -> SigningRequest:
        return SigningRequest("GET", "h", "/", "", CIMultiDict({"Authorization": value}))

    assert SIGNER.detect(req(GOOD))
    for other in ("AWS4-HMAC-SHA256 Credential=x", "HMAC-SHA256 Credential=x", "EG1 x", ""):
        assert not SIGNER.detect(req(other))
    for vendor in ("aws", "volcengine", "jingdong"):
        assert not signers.get(vendor).detect(req(GOOD))


def test_max_body_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_body"):
        AkamaiSigner(max_body=0)


# --------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (HOST, f"https://{HOST}"),
        ("AKAB-X.luna.akamaiapis.net", "https://akab-x.luna.akamaiapis.net"),
        ("akab-x.luna.akamaiapis.net:443", "https://akab-x.luna.akamaiapis.net"),
        ("127.0.0.1:3888", None),
        ("akamaiapis.net.evil.example", None),
        ("evil.example/.akamaiapis.net", None),
        ("akab-x.luna.akamaiapis.net:8443", None),
    ],
)
def test_native_upstream_only_akamai_hosts(host: str, expected: str | None) -> None:
    req = SigningRequest("GET", host, "/", "", CIMultiDict({"Authorization": GOOD}))
    assert SIGNER.native_upstream(req, SIGNER.parse(req)) == expected
