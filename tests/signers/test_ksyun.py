"""Kingsoft Cloud SigV4: known-answer vectors, SDK interop both ways (the SDK signs with
``requests-aws4auth``), the ``+``-means-space rule, endpoints, and property tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.aws import SIGNER as AWS
from keybroker.signers.base import BodyPolicy, Signer, SigningRequest
from keybroker.signers.ksyun import SIGNER
from tests.signers.conformance.ksyun import sdk_sign
from tests.signers.ksyun_upstream import aws4auth_authorization

VECTORS = Path(__file__).parent.parent / "vectors" / "ksyun"
PROXY = Credential("AKLTproxyKEY", Secret("proxy-secret-value"))
REAL = Credential("AKLTrealKEY", Secret("real-secret-value"))
X_DATE = "20240304T050607Z"
NOW = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
SIGNED = ["content-type", "host", "x-amz-content-sha256", "x-amz-date"]


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vector_request(case: dict[str, Any]) -> tuple[SigningRequest, bytes]:
    r = case["request"]
    headers = CIMultiDict({k: v for k, v in r["headers"].items() if k.lower() != "host"})
    return SigningRequest(r["method"], r["host"], r["path"], r["query"], headers), r[
        "body"
    ].encode()


# --------------------------------------------------------------------------- vectors


def test_doc_vector_keeps_the_published_request() -> None:
    (case,) = load("doc.json")
    assert case["source"].startswith("https://docs.ksyun.com/")
    published = case["expected"]["published_authorization"]
    req, _ = vector_request(case)
    req.headers["Authorization"] = published
    auth = SIGNER.parse(req)  # the published header parses; its secret is not public
    assert (auth.access_key, auth.region, auth.service) == (
        "AKLTfERrGQtUQNiiirSQFW7BzQ", "cn-beijing-6", "kir"
    )  # fmt: skip
    assert auth.signed_at == datetime(2017, 11, 29, 10, 3, 3, tzinfo=UTC)


# --------------------------------------------------------------------------- interop


@pytest.mark.parametrize(
    ("method", "query", "body"),
    [
        ("GET", [("Action", "ListUsers"), ("Marker", "a b+c/ü~*")], b""),
        ("POST", [], b"Action=ListUsers&Marker=a+b%2Bc"),
        ("POST", [("Action", "GetCdnDomains"), ("Version", "2016-09-01")], b'{"a": "b c"}'),
    ],
    ids=["get-query", "post-form", "post-json"],
)
def test_sdk_signs_we_verify_and_resign_like_sdk(
    method: str, query: list[tuple[str, str]], body: bytes
) -> None:
    req = sdk_sign(method, query, body, host="127.0.0.1:3888")
    auth = SIGNER.parse(req)
    assert auth.body is BodyPolicy.CLAIMED_SHA256
    SIGNER.verify(req, auth, PROXY, None)
    up = req.copy()
    up.host = "iam.api.ksyun.com"
    SIGNER.resign(up, auth, REAL, body, NOW)
    assert "+" not in up.query
    headers = {k.lower(): v for k, v in up.headers.items() if k.lower() != "authorization"}
    headers["host"] = up.host
    url = f"https://{up.host}{up.path}" + (f"?{up.query}" if up.query else "")
    real = (REAL.access_key, "real-secret-value")
    expected = aws4auth_authorization(method, url, headers, body, *real, "cn-beijing-6", "iam",
                                      SIGNED)  # fmt: skip
    assert up.headers["Authorization"] == expected
    assert up.headers["X-Amz-Date"] == X_DATE


def test_plus_reading_only_widens_plus() -> None:
    """``+`` may mean a space, but ``%2B`` stays a plus and a changed value still fails."""
    req = sdk_sign("GET", [("Name", "a b")])
    assert req.query.endswith("Name=a+b")
    SIGNER.verify(req, SIGNER.parse(req), PROXY, None)
    for changed in ("Name=a%2Bb", "Name=a+c"):
        bad = req.copy()
        bad.query = req.query.replace("Name=a+b", changed)
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(bad, SIGNER.parse(bad), PROXY, None)


def test_native_upstream_and_registry() -> None:
    req = sdk_sign(service="cdn")
    assert SIGNER.native_upstream(req, SIGNER.parse(req)) == "https://cdn.api.ksyun.com"
    odd = SIGNER.parse(sdk_sign(service="Bad_Name"))
    assert SIGNER.native_upstream(req, odd) is None
    assert signers.get("ksyun") is SIGNER and isinstance(SIGNER, Signer)
    assert SIGNER.public_domains == (".api.ksyun.com",)


def test_same_wire_format_as_aws() -> None:
    """A Kingsoft request is an AWS SigV4 request: both detect it (the proxy routes by the
    account of the proxy access key), and both verify it identically."""
    req = sdk_sign(query=[("Action", "ListUsers"), ("Name", "x")])
    assert SIGNER.detect(req) and AWS.detect(req)
    AWS.verify(req, AWS.parse(req), PROXY, None)


# --------------------------------------------------------------------------- properties
