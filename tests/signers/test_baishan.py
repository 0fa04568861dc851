"""Baishan token: documentation vectors, the swap checked by an independent reader, detection
order, parse errors.  Baishan publishes no SDK (see ``tests/signers/baishan_upstream.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from multidict import CIMultiDict

from keybroker import signers
from keybroker.config.check import validate
from keybroker.credentials import Credential
from keybroker.errors import ConfigError, MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from keybroker.signers.baishan import SIGNER, token_id
from keybroker.signers.base import SigningRequest
from tests.signers.baishan_upstream import presented_tokens, with_token

VECTORS = Path(__file__).parent.parent / "vectors" / "baishan"
NOW = datetime(2024, 1, 1, tzinfo=UTC)
PROXY = Credential("", Secret("proxy-token-abc"))
REAL = Credential("", Secret("real-token-xyz"))


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vector_request(case: dict[str, Any]) -> SigningRequest:
    r = case["request"]
    body = r["body"].encode() if r["body"] else None
    return SigningRequest(r["method"], r["host"], r["path"], r["query"],
                          CIMultiDict(r["headers"]), body=body)  # fmt: skip


def tokens_of(req: SigningRequest) -> list[str]:
    return presented_tokens(req.query, req.body or b"", req.headers.get("Content-Type", ""))


DOC = load("doc.json")


@pytest.mark.parametrize("case", DOC, ids=lambda c: c["name"])
def test_vector_verifies_and_swaps(case: dict[str, Any]) -> None:
    req = vector_request(case)
    proxy = Credential("", Secret(case["credential"]["secret_key"]))
    assert SIGNER.detect(req)
    auth = SIGNER.parse(req)
    assert auth.access_key == token_id(proxy.secret_key.reveal()) == SIGNER.credential_id(proxy)
    assert auth.signed_at is None
    SIGNER.verify(req, auth, proxy, req.body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, REAL, req.body)
    SIGNER.resign(req, auth, Credential("", Secret(case["real_token"])), req.body, NOW)
    assert [list(p) for p in parse_qsl(req.query)] == case["expected"]["query"]
    expected_body = case["expected"]["body"]
    if expected_body is None:
        assert req.body is None
    elif isinstance(expected_body, dict):
        assert json.loads(req.body or b"") == expected_body
    else:
        assert [list(p) for p in parse_qsl((req.body or b"").decode())] == expected_body
    assert tokens_of(req) == [case["real_token"]]


def test_doc_source_recorded() -> None:
    assert all(c["source"].endswith("portal.baishancloud.com/track/document/api/1/1065")
               for c in DOC)  # fmt: skip


def test_query_swap_keeps_other_parameters_byte_for_byte() -> None:
    raw = "domains=a.example%2Cb.example&token=proxy-token-abc&config%5B%5D=origin"
    req = SigningRequest("GET", "cdn.api.baishan.com", "/v2/domain/config", raw)
    SIGNER.resign(req, SIGNER.parse(req), REAL, None, NOW)
    assert req.query == "domains=a.example%2Cb.example&token=real-token-xyz&config%5B%5D=origin"


def test_reference_query_round_trip() -> None:
    req = SigningRequest(
        "GET", "h", "/v2/domain/list", with_token([("page", "1")], "proxy-token-abc")
    )
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, PROXY, None)
    SIGNER.resign(req, auth, REAL, None, NOW)
    assert tokens_of(req) == ["real-token-xyz"]


# --------------------------------------------------------------------------- detection


def test_detect_is_a_last_resort() -> None:
    def q(query: str, **headers: str) -> SigningRequest:
        return SigningRequest("GET", "h", "/", query, CIMultiDict(headers))

    assert SIGNER.detect(q("token=abc"))
    assert not SIGNER.detect(q("token=abc", Authorization="QBox a:b"))
    assert not SIGNER.detect(q("token=abc&Signature=x&AccessKeyId=y"))
    assert not SIGNER.detect(q("token=abc&X-Amz-Signature=x"))
    assert not SIGNER.detect(q("e=1700000000&token=ak:sign"))  # a Qiniu download token
    assert not SIGNER.detect(q("token=a&token=b"))
    assert not SIGNER.detect(q("other=1"))
    # registered last among the body-credential schemes, so every other scheme is tried first
    order = [s.vendor for s in signers.all_signers() if s.body_credentials]
    assert order[-1] == "baishan"


# --------------------------------------------------------------------------- parse errors


def req_with(query: str = "", body: bytes | None = None, ctype: str = "") -> SigningRequest:
    headers = CIMultiDict({"Content-Type": ctype} if ctype else {})
    return SigningRequest("POST", "h", "/", query, headers, body=body)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (req_with("a=1"), "no token parameter"),
        (req_with("token="), "1-512 printable ASCII"),
        (req_with("token=" + "a" * 600), "1-512 printable ASCII"),
        (req_with("token=a%20b"), "1-512 printable ASCII"),
        (req_with("token=a&token=b"), "more than once"),
        (req_with("token=a", b'{"token": "b"}', "application/json"), "both the query and the body"),
        (req_with("", b'{"token": 5}', "application/json"), "1-512 printable ASCII"),
        (req_with("", b'{"token": "a", "token": "b"}', "application/json"), "more than once"),
        (req_with("", b"token=a&token=b", "application/x-www-form-urlencoded"), "more than once"),
        (req_with("", b'{"token": "a"}', "text/plain"), "no token parameter"),
    ],
)
def test_malformed(req: SigningRequest, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(req)
    assert message in str(exc.value)
    assert exc.value.status == 400


def test_token_never_in_messages_or_reprs() -> None:
    secret = "s3cr3t-token-value"
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(req_with(f"token={secret}&token={secret}"))
    assert secret not in str(exc.value)
    auth = SIGNER.parse(req_with(f"token={secret}"))
    assert secret not in repr(auth) and secret not in auth.access_key


def test_config_needs_only_the_secret_key() -> None:
    proxy_token, real_token = "pXq7Rw2Lk9Zt4Nv8Bm3Jh6Gd", "rTa5Ye1Uc0Io2Pl9Kj8Hg7Fd"
    ok = Endpoint(
        "bs", "baishan", Credential("", Secret(proxy_token)), Credential("", Secret(real_token))
    )
    validate(Config(endpoints=[ok]))
    missing = Endpoint(
        "bs", "baishan", Credential("label", Secret("")), Credential("", Secret(real_token))
    )
    with pytest.raises(ConfigError, match=r"Proxy\.SecretKey"):
        validate(Config(endpoints=[missing]))
    assert SIGNER.credential_fields == ("secret_key",)


def test_registry_and_endpoint() -> None:
    assert signers.get("baishan") is SIGNER
    req = req_with("token=abc")
    assert SIGNER.native_upstream(req, SIGNER.parse(req)) == "https://cdn.api.baishan.com"
    assert ".baishan.com" in SIGNER.public_domains
