"""Qiniu QBox / Qiniu signatures: known-answer vectors, SDK interop both ways, parse errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from multidict import CIMultiDict
from qiniu import Auth, QiniuMacAuth
from qiniu.auth import QiniuMacRequestsAuth, RequestsAuth

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, SigningRequest
from keybroker.signers.qiniu import SIGNER, signing_data
from tests.signers.conformance.qiniu import replay
from tests.signers.conformance.respell import WHEN, b64_parts

VECTORS = Path(__file__).parent.parent / "vectors" / "qiniu"
PROXY = Credential("QNproxyAK", Secret("qiniu-proxy-secret"))
REAL = Credential("QNrealAK", Secret("qiniu-real-secret"))


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vector_request(case: dict[str, Any]) -> tuple[SigningRequest, bytes]:
    r = case["request"]
    req = SigningRequest(r["method"], r["host"], r["path"], r["query"], CIMultiDict(r["headers"]))
    return req, r["body"].encode()


def on_the_wire(
    auth: Any,
    method: str = "POST",
    url: str = "https://rs.qiniuapi.com/move/YTpi/YTpj?force=true",
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[SigningRequest, bytes]:
    """What the SDK's requests hooks put on the wire (they run at prepare time)."""
    prepared = requests.Request(method, url, data=data, headers=headers, auth=auth).prepare()
    parts = urlsplit(prepared.url)
    body = prepared.body or b""
    raw = body.encode() if isinstance(body, str) else body
    req = SigningRequest(method, parts.netloc, parts.path, parts.query,
                         CIMultiDict(prepared.headers))  # fmt: skip
    return req, raw


def qbox(cred: Credential = PROXY) -> RequestsAuth:
    return RequestsAuth(Auth(cred.access_key, cred.secret_key.reveal()))


def qiniu_mac(cred: Credential = PROXY, dated: bool = True) -> QiniuMacRequestsAuth:
    mac = QiniuMacAuth(cred.access_key, cred.secret_key.reveal(),
                       disable_qiniu_timestamp_signature=not dated)  # fmt: skip
    return QiniuMacRequestsAuth(mac)


# --------------------------------------------------------------------------- vectors

DOC_CASES = load("doc.json")


def test_doc_vector_signing_data() -> None:
    (case,) = DOC_CASES
    assert case["source"].startswith("https://developer.qiniu.com/")
    req, body = vector_request(case)
    data = signing_data("QBox", req, body)
    assert data.decode() == case["expected"]["signing_data"]
    digest = hmac.new(b"MY_SECRET_KEY", data, hashlib.sha1).hexdigest()
    assert digest == case["expected"]["hmac_hex"]


# --------------------------------------------------------------------------- interop


INTEROP = [
    ("qbox-form", qbox, {"data": {"op": "/stat/YTpi", "x": "a b&c"}}),
    ("qbox-get", qbox, {"method": "GET"}),
    ("qbox-json", qbox, {"data": '{"a":1}', "headers": {"Content-Type": "application/json"}}),
    ("mac-form", qiniu_mac, {"data": {"k": "ü v"}}),
    ("mac-json", qiniu_mac, {"data": '{"a":1}', "headers": {"Content-Type": "application/json"}}),
    ("mac-get", qiniu_mac, {"method": "GET", "url": "http://127.0.0.1:8080/v2/query?a=%2F"}),
    ("mac-x-headers", qiniu_mac, {"headers": {"X-Qiniu-Meta-Bb": "2", "X-Qiniu-Aa": "1"}}),
    ("mac-octet", qiniu_mac, {"data": b"\x00\xff",
                              "headers": {"Content-Type": "application/octet-stream"}}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "kwargs"), INTEROP, ids=[c[0] for c in INTEROP])
def test_sdk_signs_proxy_creds_we_verify(name: str, make: Any, kwargs: dict[str, Any]) -> None:
    req, body = on_the_wire(make(), **kwargs)
    auth = SIGNER.parse(req)
    assert auth.access_key == PROXY.access_key
    SIGNER.verify(req, auth, PROXY, body if auth.body is BodyPolicy.BUFFER else None)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, REAL, body)


def test_mac_without_date_has_no_signed_time() -> None:
    req, body = on_the_wire(qiniu_mac(dated=False), data={"a": "1"})
    auth = SIGNER.parse(req)
    assert auth.signed_at is None and "X-Qiniu-Date" not in req.headers
    SIGNER.verify(req, auth, PROXY, body)


@pytest.mark.parametrize("scheme", ["qbox", "mac", "mac-undated"])
def test_resign_equals_sdk_with_real_creds(scheme: str) -> None:
    make = {"qbox": qbox, "mac": qiniu_mac,
            "mac-undated": lambda c=PROXY: qiniu_mac(c, dated=False)}[scheme]  # fmt: skip
    data = {"op": "/delete/YTpi", "n": "1"}
    req, body = on_the_wire(make(), url="http://proxy.example:3888/batch?x=1", data=data)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, body)
    up = req.copy()
    up.host = "rs.qiniuapi.com"
    now = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    SIGNER.resign(up, auth, REAL, body, now)
    if scheme == "qbox":
        token = Auth(REAL.access_key, "qiniu-real-secret").token_of_request(
            "https://rs.qiniuapi.com/batch?x=1", body.decode(), "application/x-www-form-urlencoded"
        )
        assert up.headers["Authorization"] == f"QBox {token}"
        return
    mac = QiniuMacAuth(REAL.access_key, "qiniu-real-secret")
    x_headers = {"X-Qiniu-Date": "20240304T050607Z"} if scheme == "mac" else {}
    assert up.headers.get("X-Qiniu-Date") == x_headers.get("X-Qiniu-Date")
    token = mac.token_of_request("POST", "rs.qiniuapi.com", "https://rs.qiniuapi.com/batch?x=1",
                                 mac.qiniu_headers(x_headers),
                                 "application/x-www-form-urlencoded", body)  # fmt: skip
    assert up.headers["Authorization"] == f"Qiniu {token}"


def test_tampering_fails() -> None:
    req, body = on_the_wire(qiniu_mac(), data={"a": "1"}, headers={"X-Qiniu-Meta-A": "x"})
    for mutate in (
        lambda r: setattr(r, "query", "force=false"),
        lambda r: setattr(r, "method", "PUT"),
        lambda r: setattr(r, "path", "/move/YTpi/YTpk"),
        lambda r: setattr(r, "host", "evil.example"),
        lambda r: r.headers.__setitem__("X-Qiniu-Meta-A", "y"),
        lambda r: r.headers.__setitem__("X-Qiniu-Date", "20240101T000000Z"),
        lambda r: r.headers.__setitem__("Content-Type", "text/plain"),
    ):
        changed = req.copy()
        mutate(changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, SIGNER.parse(req), PROXY, body + b"&b=2")


def test_body_policy() -> None:
    req, _ = on_the_wire(qbox(), data='{"a":1}', headers={"Content-Type": "application/json"})
    assert SIGNER.parse(req).body is BodyPolicy.UNSIGNED
    req, _ = on_the_wire(qbox(), data={"a": "1"})
    assert SIGNER.parse(req).body is BodyPolicy.BUFFER
    octet = {"Content-Type": "application/octet-stream"}
    req, _ = on_the_wire(qiniu_mac(), data=b"x", headers=octet)
    assert SIGNER.parse(req).body is BodyPolicy.UNSIGNED


# --------------------------------------------------------------------------- detect / parse

SIG = "2cSPzsJoxjXq8eF5I-KXuZDjOrg="


def with_auth(value: str, **headers: str) -> SigningRequest:
    return SigningRequest("GET", "rs.qiniuapi.com", "/stat/x", "",
                          CIMultiDict({"Authorization": value, **headers}))  # fmt: skip


def test_detect_is_specific() -> None:
    assert SIGNER.detect(with_auth(f"QBox AK:{SIG}"))
    assert SIGNER.detect(with_auth(f"Qiniu AK:{SIG}"))
    for other in ("Basic dXNlcjpwYXNz", "HMAC-SHA256 Credential=x", "QBoxAK:x", "UpToken a:b:c",
                  "AWS4-HMAC-SHA256 Credential=a"):  # fmt: skip
        assert not SIGNER.detect(with_auth(other))
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "token=a:b"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"Bearer AK:{SIG}", "must start with 'QBox ' or 'Qiniu '"),
        ("QBox AK", "AccessKey:Signature"),
        (f"QBox :{SIG}", "access key is empty"),
        ("QBox AK:short", "URL-safe base64 of 20 bytes"),
        (f"QBox AK:{SIG[:-2]}+=", "URL-safe base64 of 20 bytes"),
        ("QBox " + "A" * 2000, "longer than"),
        (f"Qiniu AK:{SIG}:extra", "URL-safe base64"),
    ],
)
def test_malformed_authorization(value: str, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(with_auth(value))
    assert message in str(exc.value)
    assert SIG[:10] not in str(exc.value)
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Qiniu-Date": "2024-01-01"}, "YYYYMMDDTHHMMSSZ"),
        ({"X-Qiniu-Date": "20241301T000000Z"}, "not a valid date"),
    ],
)
def test_malformed_qiniu_headers(headers: dict[str, str], message: str) -> None:
    with pytest.raises(MalformedSignature, match=message):
        SIGNER.parse(with_auth(f"Qiniu AK:{SIG}", **headers))


def test_repeated_headers_refused() -> None:
    req = with_auth(f"Qiniu AK:{SIG}")
    req.headers.add("x-qiniu-a", "1")
    req.headers.add("X-Qiniu-A", "2")
    with pytest.raises(MalformedSignature, match="'X-Qiniu-A' appears more than once"):
        SIGNER.parse(req)
    twice = with_auth(f"QBox AK:{SIG}")
    twice.headers.add("Authorization", f"QBox AK:{SIG}")
    with pytest.raises(MalformedSignature, match="exactly one Authorization"):
        SIGNER.parse(twice)


def test_registry_and_domains() -> None:
    assert signers.get("qiniu") is SIGNER
    assert (
        SIGNER.native_upstream(
            with_auth(f"QBox AK:{SIG}"), SIGNER.parse(with_auth(f"QBox AK:{SIG}"))
        )
        is None
    )
    assert ".qiniuapi.com" in SIGNER.public_domains and ".qbox.me" in SIGNER.public_domains
    assert "Secret" not in repr(SIGNER.parse(with_auth(f"QBox AK:{SIG}")).state)


def test_a_non_canonical_base64_signature_is_refused() -> None:
    """Setting the unused bits of the last Base64 character keeps the digest, but Qiniu's own
    server compares the text: such a spelling is refused as malformed, not verified (so it
    cannot be a fresh spelling of a captured request for the replay cache)."""
    case = replay({"a": "1"}, "qiniu-sk-1", WHEN)
    parts = b64_parts(case.req)
    assert parts is not None
    scheme, ak, sig = parts
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    text = sig.rstrip("=")
    spare = alphabet[alphabet.index(text[-1]) ^ 1]
    req = case.req.copy()
    req.headers["Authorization"] = f"{scheme} {ak}:{text[:-1]}{spare}="
    with pytest.raises(MalformedSignature, match="not canonical"):
        SIGNER.parse(req)
