"""Tencent Cloud TC3-HMAC-SHA256 and the v1 HmacSHA1/HmacSHA256 signatures: signed by
tencentcloud-sdk-python-common (``tencent_upstream.sdk_signed``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import ParsedAuth, SigningRequest
from tests.signers.conformance import respell
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    case_cred,
    case_request,
    keys,
    load,
    text,
)
from tests.signers.conformance.respell import ReplayCase
from tests.signers.tencent_upstream import sdk_client, sdk_signed

names = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.", min_size=1, max_size=8)
params = st.dictionaries(names, text, max_size=5)
secrets = st.text(
    st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF), min_size=1, max_size=30
).filter(lambda s: s.strip() == s)
schemes = st.sampled_from(["TC3-HMAC-SHA256", "HmacSHA1", "HmacSHA256"])


def sign(scheme: str, method: str, p: dict[str, Any], sk: str) -> Signed:
    client = sdk_client(
        "cvm.tencentcloudapi.com", "AKIDprop", sk, method=method, sign_method=scheme
    )
    req = sdk_signed(client, "DescribeThings", {**p, "Fixed": "v"}, 1717171717)
    return Signed(req, Credential("AKIDprop", Secret(sk)))


signed = st.builds(sign, schemes, st.sampled_from(["GET", "POST"]), params, secrets)


def _wire_byte(signed: Signed, data: st.DataObject) -> list[Signed]:
    """One byte of the signed parameters (query or body) changed; not a mere respelling."""
    req = signed.req
    text_ = req.query or (req.body or b"").decode()
    wire = bytearray(text_.encode())
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] = data.draw(st.sampled_from([c for c in b"aZ09" if c != wire[i]]))
    if parse_qsl(bytes(wire).decode("utf-8", "replace")) == parse_qsl(text_):
        return []  # another spelling of the same parameters (e.g. %A0 -> %a0)
    out = signed.copy()
    if req.query:
        out.req.query = wire.decode("utf-8", "replace")
    else:
        out.req.body = bytes(wire)
    return [out]


def _resigned(
    signed: Signed, req: SigningRequest, auth: ParsedAuth, real: Credential, now: datetime
) -> None:
    assert auth.signed_at == now


header_names = st.sampled_from(["host", "content-type", "x-tc-action", "X", ""])
auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "TC3-HMAC-SHA256 " + t),
    st.builds(
        lambda c, h, s: f"TC3-HMAC-SHA256 Credential={c}, SignedHeaders={h}, Signature={s}",
        st.lists(st.text(max_size=12), min_size=1, max_size=5).map("/".join),
        st.lists(header_names, max_size=4).map(";".join),
        st.text("0123456789abcdef", min_size=62, max_size=66),
    ),
)
tc3_garbage = st.builds(
    lambda a, ts, q, b: SigningRequest(
        "GET",
        "h",
        "/",
        q,
        CIMultiDict({"Authorization": a, "X-TC-Timestamp": ts, "Content-Type": "application/json"}),
        body=b,
    ),
    auth_values,
    st.text(max_size=14),
    st.text(max_size=40),
    st.binary(max_size=40),
)
v1_keys = st.sampled_from(
    ["SecretId", "Nonce", "Timestamp", "Signature", "SignatureMethod", "Token", "Action", "a_b"]
)
v1_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "HmacSHA1",
            "HmacSHA256",
            "1465185768",
            "11886",
            "EliP9YW3pW28FpsEdkXt/+WcGeI=",
            "A" * 43 + "=",
        ]
    ),
)
FORM_TYPE = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})


def _v1(pairs: list[tuple[str, str]], in_body: bool) -> SigningRequest:
    encoded = urlencode(pairs)
    if in_body:
        return SigningRequest("POST", "h", "/", "", FORM_TYPE.copy(), body=encoded.encode())
    return SigningRequest("GET", "h", "/", encoded)


v1_garbage = st.builds(_v1, st.lists(st.tuples(v1_keys, v1_values), max_size=10), st.booleans())
form_garbage = st.binary(max_size=80).map(
    lambda b: SigningRequest("POST", "h", "/", "", FORM_TYPE.copy(), body=b"Signature=x&" + b)
)

FORMS = [
    Form(
        "tencent",
        "tencent",
        signed,
        reals=keys("AKIDreal", secrets, st.just("tok")),
        secrets=secrets,
        tampers={"parameter-byte": _wire_byte},
        refusable=frozenset({"parameter-byte"}),  # a change that breaks the syntax
        garbage={
            "tc3-authorization": Garbage(tc3_garbage),
            "v1-parameters": Garbage(v1_garbage),
            "undecodable-form-body": Garbage(form_garbage, examples=200),
        },
        on_resigned=_resigned,
        examples=40,
    )
]


def _vector(c: dict[str, Any]) -> Vector:
    if "authorization" in c["expected"]:
        read: Any = lambda r: r.headers["Authorization"]  # noqa: E731
        expected = c["expected"]["authorization"]
    else:
        read = lambda r: dict(parse_qsl(r.query or (r.body or b"").decode()))["Signature"]  # noqa: E731
        expected = c["expected"]["signature"]
    req = case_request(c, with_body=True)
    at = datetime.fromtimestamp(c["timestamp"], UTC)
    return Vector(
        "tencent",
        c["name"],
        req,
        case_cred(c),
        req.body,
        parsed={
            "service": c["service"],
            "region": c["region"],
            "action": c["action"],
            "signed_at": at,
        },
        resigned=read,
        expected=expected,
        now=at,
    )


VECTORS = [_vector(c) for c in load("tencent", "sdk.json") + load("tencent", "doc.json")]


def _replay_tc3(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    client = sdk_client("cvm.tencentcloudapi.com", "AKIDprop", sk, method="POST")
    req = sdk_signed(client, "RunThings", dict(query), int(when.timestamp()))
    return ReplayCase("tencent", req, Credential("AKIDprop", Secret(sk)), req.body or b"")


def _replay_v1(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    client = sdk_client(
        "cvm.tencentcloudapi.com", "AKIDprop", sk, method="GET", sign_method="HmacSHA256"
    )
    req = sdk_signed(client, "RunThings", dict(query), int(when.timestamp()))
    return ReplayCase("tencent", req, Credential("AKIDprop", Secret(sk)), b"")


REPLAY = {
    "tencent": (_replay_tc3, [respell.auth_fields]),
    "tencent-v1": (_replay_v1, respell.QUERY),
}
