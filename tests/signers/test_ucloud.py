"""UCloud: known-answer vectors, SDK interop both ways, parameter locations, parse errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from multidict import CIMultiDict
from ucloud.core.auth import Credential as SdkCredential
from ucloud.core.typesystem import encoder

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.ucloud import SIGNER, string_to_sign

VECTORS = Path(__file__).parent.parent / "vectors" / "ucloud"
PROXY = Credential("ucloud-proxy-pk", Secret("ucloud-proxy-private"))
REAL = Credential("ucloud-real-pk", Secret("ucloud-real-private"))
FORM = "application/x-www-form-urlencoded"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def load(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def vector_request(case: dict[str, Any]) -> SigningRequest:
    r = case["request"]
    return SigningRequest(r["method"], r["host"], r["path"], r["query"],
                          CIMultiDict(r["headers"]), body=r["body"].encode())  # fmt: skip


def sdk_signed(params: dict[str, Any], cred: Credential = PROXY) -> dict[str, str]:
    """What the SDK's client sends: encoder-flattened parameters plus its Signature."""
    flat: dict[str, str] = encoder.encode(params)
    flat["Signature"] = SdkCredential(cred.access_key, cred.secret_key.reveal()).verify_ac(flat)
    return flat


def form_request(flat: dict[str, str]) -> SigningRequest:
    return SigningRequest("POST", "api.ucloud.cn", "/", "", CIMultiDict({"Content-Type": FORM}),
                          body=urlencode(flat).encode())  # fmt: skip


def params_of(req: SigningRequest) -> dict[str, Any]:
    if not req.body:
        return dict(parse_qsl(req.query))
    if req.headers.get("Content-Type") == "application/json":
        return encoder.encode(json.loads(req.body))  # type: ignore[no-any-return]
    return dict(parse_qsl(req.body.decode()))


def sdk_accepts(req: SigningRequest, cred: Credential) -> bool:
    """The SDK's algorithm, applied to what we send, with ``cred``'s private key."""
    params = params_of(req)
    given = params.pop("Signature")
    expected = SdkCredential(cred.access_key, cred.secret_key.reveal()).verify_ac(params)
    return bool(given == expected and params["PublicKey"] == cred.access_key)


# --------------------------------------------------------------------------- vectors

DOC_CASES = load("doc.json")


@pytest.mark.parametrize("case", DOC_CASES, ids=lambda c: c["name"])
def test_doc_string_to_sign(case: dict[str, Any]) -> None:
    assert case["source"].startswith("https://")
    params = list(params_of(vector_request(case)).items())
    assert string_to_sign(params) == case["expected"]["string_to_sign"]


# --------------------------------------------------------------------------- interop

PARAMS = [
    {"Action": "DescribeUHostInstance", "Region": "cn-bj2", "Limit": 10},
    {"Action": "X", "List": ["a", "b"], "Obj": {"K": True, "F": 1.0, "G": 0.5}, "S": "ü +&="},
    {"Action": "GetProjectList"},
]


@pytest.mark.parametrize("params", PARAMS, ids=["describe", "nested", "minimal"])
@pytest.mark.parametrize("where", ["query", "form", "json"])
def test_sdk_signs_proxy_creds_we_verify_then_resign(params: dict[str, Any], where: str) -> None:
    flat = sdk_signed(params)
    if where == "query":
        req = SigningRequest("GET", "proxy.example", "/", urlencode(flat))
    elif where == "form":
        req = form_request(flat)
    else:
        doc = {**params, "PublicKey": PROXY.access_key, "Signature": flat["Signature"]}
        req = SigningRequest("POST", "proxy.example", "/", "",
                             CIMultiDict({"Content-Type": "application/json"}),
                             body=json.dumps(doc).encode())  # fmt: skip
    assert SIGNER.detect(req)
    auth = SIGNER.parse(req)
    assert (auth.access_key, auth.action) == (PROXY.access_key, params["Action"])
    SIGNER.verify(req, auth, PROXY, req.body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(PROXY.access_key, Secret("other")), req.body)
    SIGNER.resign(req, auth, REAL, req.body, NOW)
    assert sdk_accepts(req, REAL)
    assert not sdk_accepts(req, PROXY)
    if where == "form":
        # Re-signing equals what the SDK sends for the real key, byte for byte.
        assert req.body == form_request(sdk_signed(params, REAL)).body


def test_resign_keeps_other_parts_untouched() -> None:
    flat = sdk_signed({"Action": "A", "Name": "x y"})
    raw = "Name=x%20y&" + urlencode({k: v for k, v in flat.items() if k != "Name"})
    req = SigningRequest("GET", "h", "/", raw)
    SIGNER.resign(req, SIGNER.parse(req), REAL, None, NOW)
    assert req.query.startswith("Name=x%20y&")
    assert sdk_accepts(req, REAL)


def test_tampering_fails() -> None:
    flat = sdk_signed({"Action": "DescribeUHostInstance", "Region": "cn-bj2", "Limit": 10})
    for name, value in (("Limit", "11"), ("Region", "cn-bj3"), ("Action", "DeleteUHost")):
        changed = form_request({**flat, name: value})
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, SIGNER.parse(changed), PROXY, changed.body)
    added = form_request({**flat, "Extra": "1"})
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(added, SIGNER.parse(added), PROXY, added.body)


# --------------------------------------------------------------------------- detect / parse

SIG = "a" * 40


def test_detect_is_specific() -> None:
    assert SIGNER.detect(SigningRequest("GET", "h", "/", f"PublicKey=p&Signature={SIG}"))
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", f"AccessKeyId=p&Signature={SIG}"))
    assert not SIGNER.detect(SigningRequest("GET", "h", "/", "token=abc"))
    body = SigningRequest("POST", "h", "/", "", body=f"PublicKey=p&Signature={SIG}".encode())
    assert SIGNER.detect(body)


def q(query: str, body: bytes | None = None, ctype: str = FORM) -> SigningRequest:
    return SigningRequest("POST", "h", "/", query, CIMultiDict({"Content-Type": ctype}),
                          body=body)  # fmt: skip


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (q("Action=A"), "must carry PublicKey and Signature"),
        (q(f"PublicKey=&Signature={SIG}"), "PublicKey is empty"),
        (q("PublicKey=p&Signature=XYZ"), "40 lower-case hex"),
        (q(f"PublicKey=p&Signature={SIG.upper()}"), "40 lower-case hex"),
        (q(f"PublicKey=p&PublicKey=q&Signature={SIG}"), "'PublicKey' appears more than once"),
        (q(f"PublicKey=p&Signature={SIG}&A=1&A=2"), "'A' appears more than once"),
        (q("A=%ff", b""), "not UTF-8"),
        (q("x=1", f"PublicKey=p&Signature={SIG}".encode()), "both the query and the body"),
        (q("", b"\xff\xfe", FORM), "form body is not UTF-8"),
        (q("", b"{not json", "application/json"), "cannot be parsed"),
        (q("", b"[1, 2]", "application/json"), "must be an object"),
        (q("", b'{"PublicKey": "p", "PublicKey": "q"}', "application/json"), "repeated key"),
        (
            q(
                "",
                b'{"PublicKey": "p", "Signature": "%s", "X": null}' % SIG.encode(),
                "application/json",
            ),
            "null",
        ),
        (q("", b'{"A": ' + b"[" * 40 + b"]" * 40 + b"}", "application/json"), "deeper than"),
        (q("", b"binary", "application/octet-stream"), "must be a form or JSON"),
    ],
)
def test_malformed(req: SigningRequest, message: str) -> None:
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(req)
    assert message in str(exc.value)
    assert exc.value.status == 400


def test_signature_never_in_messages() -> None:
    flat = sdk_signed({"Action": "A", "A": "1"})
    req = form_request(flat)
    req.body = (req.body or b"") + b"&A=2"
    with pytest.raises(MalformedSignature) as exc:
        SIGNER.parse(req)
    assert flat["Signature"] not in str(exc.value)
    assert "private" not in repr(SIGNER.parse(form_request(flat)).state)


def test_registry_and_endpoint() -> None:
    assert signers.get("ucloud") is SIGNER
    assert SIGNER.body_credentials is True
    req = form_request(sdk_signed({"Action": "A", "Region": "cn-bj2"}))
    auth = SIGNER.parse(req)
    assert auth.region == "cn-bj2"
    assert SIGNER.native_upstream(req, auth) == "https://api.ucloud.cn"
