"""Alibaba Cloud RPC (HMAC-SHA1 parameters) and ACS3-HMAC-SHA256: signed by the tea SDK
(``alibabacloud_tea_openapi`` and ``aliyun_upstream.sdk_acs3_authorization``)."""

from __future__ import annotations

import hashlib
import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from alibabacloud_tea_openapi.utils import Utils
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from tests.signers.aliyun_upstream import sdk_acs3_authorization
from tests.signers.conformance import respell
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    any_secrets,
    body_flip,
    case_cred,
    changed,
    flip,
    header,
    keys,
    load,
    text,
    tokens,
)
from tests.signers.conformance.respell import ReplayCase

FORM = "application/x-www-form-urlencoded"
RPC_AUTH = {
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "SecurityToken",
}
# The RPC signers encode names; any name works.  ACS3: the tea SDK does not encode names, the
# documentation does — they agree on the names APIs use, which is what ACS3 tests draw.
rpc_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: n not in RPC_AUTH
)
acs3_names = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=8)
NONCE = "nonce-0123456789"
STAMP = "2024-05-06T07:08:09Z"
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE"])
rpc_params = st.dictionaries(rpc_names, text, max_size=5)
acs3_query = st.dictionaries(acs3_names, text, max_size=5)


def _cred(sk: str, token: str | None) -> Credential:
    return Credential("LTAIprop", Secret(sk), Secret(token) if token else None)


def rpc_sign(
    method: str, query: dict[str, str], body: dict[str, str], sk: str, token: str | None = None
) -> Signed:
    """Sign with the tea SDK's RPC signer; credentials in the query, extras in a form body."""
    body = {k: v for k, v in body.items() if k not in query}
    params = {
        **query,
        "AccessKeyId": "LTAIprop",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": NONCE,
        "Timestamp": STAMP,
    }
    if token:
        params["SecurityToken"] = token
    params["Signature"] = Utils.get_rpcsignature({**params, **body}, method, sk)
    headers = CIMultiDict({"Content-Type": FORM} if body else {})
    raw = urlencode(body).encode() if body else None
    req = SigningRequest(method, "ecs.aliyuncs.com", "/", urlencode(params), headers, body=raw)
    return Signed(req, _cred(sk, token))


def acs3_sign(
    method: str, query: dict[str, str], body: str, sk: str, token: str | None = None
) -> Signed:
    payload = hashlib.sha256(body.encode()).hexdigest()
    headers = {
        "host": "ecs.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-date": STAMP,
        "x-acs-signature-nonce": NONCE,
        "content-type": "application/json",
        "x-acs-content-sha256": payload,
    }
    if token:
        headers["x-acs-accesskey-id"] = "LTAIprop"
        headers["x-acs-security-token"] = token
    headers["Authorization"] = sdk_acs3_authorization(
        method, "/", query, headers, payload, "LTAIprop", sk
    )
    req = SigningRequest(
        method, "ecs.aliyuncs.com", "/", urlencode(query), CIMultiDict(headers), body=body.encode()
    )
    return Signed(req, _cred(sk, token))


def _rpc_param(change: str) -> Any:
    """A tamper of the signed RPC parameters in the query."""

    def tamper(signed: Signed, data: st.DataObject) -> list[Signed]:
        params = dict(parse_qsl(signed.req.query, keep_blank_values=True))
        own = sorted(n for n in params if n not in RPC_AUTH)
        if change in ("value", "name") and not own:
            return []
        if change == "value":
            name = data.draw(st.sampled_from(own))
            flipped = flip(params[name].encode(), data).decode("utf-8", "replace")
            params[name] = flipped if flipped != params[name] else flipped + "!"
        elif change == "name":
            name = data.draw(st.sampled_from(own))
            params[name + "x"] = params.pop(name)
        elif change == "nonce":
            params["SignatureNonce"] = "other"
        else:
            params["Timestamp"] = "2024-05-06T07:08:10Z"
        return changed(signed, query=urlencode(params))

    return tamper


def _rpc_method(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, method="POST" if signed.req.method != "POST" else "GET")


def _acs3_query(signed: Signed, data: st.DataObject) -> list[Signed]:
    query = dict(parse_qsl(signed.req.query, keep_blank_values=True))
    if not query:
        return []
    name = data.draw(st.sampled_from(sorted(query)))
    return changed(signed, query=urlencode({**query, name: query[name] + "!"}))


def _now_signed(
    signed: Signed, req: SigningRequest, auth: ParsedAuth, real: Credential, now: datetime
) -> None:
    assert auth.signed_at == now


def _reals() -> st.SearchStrategy[Credential]:
    return keys("LTAIreal", any_secrets, st.none() | tokens)


auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "ACS3-HMAC-SHA256 " + t),
    st.builds(
        lambda c, h, s: f"ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s}",
        st.text(max_size=12),
        st.lists(
            st.sampled_from(
                [
                    "host",
                    "x-acs-date",
                    "x-acs-content-sha256",
                    "x-acs-signature-nonce",
                    "content-type",
                    "X",
                    "",
                ]
            ),
            max_size=6,
        ).map(";".join),
        st.text("0123456789abcdef", min_size=62, max_size=66),
    ),
)
header_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["2024-01-01T00:00:00Z", hashlib.sha256(b"").hexdigest(), "n"]),
)
acs3_garbage = st.builds(
    lambda a, d, sha, n, q: SigningRequest(
        "GET",
        "h",
        "/",
        q,
        CIMultiDict(
            {
                "Authorization": a,
                "x-acs-date": d,
                "x-acs-content-sha256": sha,
                "x-acs-signature-nonce": n,
            }
        ),
        body=b"",
    ),
    auth_values,
    header_values,
    header_values,
    header_values,
    st.text(max_size=60),
)
rpc_keys = st.sampled_from([*sorted(RPC_AUTH), "Action", "RegionId"])
rpc_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["HMAC-SHA1", "1.0", "2024-01-01T00:00:00Z", "A" * 27 + "=", "LTAIx"]),
)


@st.composite
def rpc_garbage(draw: st.DrawFn) -> SigningRequest:
    query = draw(st.lists(st.tuples(rpc_keys, rpc_values), max_size=10))
    body = draw(st.lists(st.tuples(rpc_keys, rpc_values), max_size=6))
    junk = draw(st.none() | st.binary(max_size=40))
    raw = junk if junk is not None else urlencode(body).encode()
    path = draw(st.sampled_from(["/", "", "/x"]))
    return SigningRequest(
        "POST", "h", path, urlencode(query), CIMultiDict({"Content-Type": FORM}), body=raw
    )


FORMS = [
    Form(
        "aliyun-rpc",
        "aliyun",
        st.builds(rpc_sign, methods, rpc_params, rpc_params, any_secrets, st.none() | tokens),
        reals=_reals(),
        secrets=any_secrets,
        tampers={
            "value": _rpc_param("value"),
            "name": _rpc_param("name"),
            "method": _rpc_method,
            "nonce": _rpc_param("nonce"),
            "timestamp": _rpc_param("timestamp"),
        },
        garbage={"parameters": Garbage(rpc_garbage(), resign=True)},
        on_resigned=_now_signed,
    ),
    Form(
        "aliyun-acs3",
        "aliyun",
        st.builds(acs3_sign, methods, acs3_query, text, any_secrets, st.none() | tokens),
        reals=_reals(),
        secrets=any_secrets,
        tampers={
            "body": body_flip,
            "content-type": header("content-type", "application/jsoN"),
            "date": header("x-acs-date", "2024-05-06T07:08:10Z"),
            "path": lambda s, d: changed(s, path="/x"),
            "query": _acs3_query,
        },
        garbage={"authorization": Garbage(acs3_garbage, resign=True)},
    ),
]


def all_params(req: SigningRequest) -> dict[str, str]:
    params = dict(parse_qsl(req.query, keep_blank_values=True))
    if req.body:
        params.update(parse_qsl(req.body.decode(), keep_blank_values=True))
    return params


def _vector(c: dict[str, Any]) -> Vector:
    r = c["request"]
    req = SigningRequest(
        r["method"],
        r["host"],
        r["path"],
        r["query"],
        CIMultiDict(r["headers"]),
        body=r["body"].encode(),
    )
    at = datetime.strptime(c["signed_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if c["scheme"] == "acs3":
        read: Any = lambda out: out.headers["Authorization"]  # noqa: E731
        expected: object = c["expected"]["authorization"]
    else:  # every parameter kept, the Signature the SDK's
        read, expected = all_params, {**all_params(req), "Signature": c["expected"]["signature"]}
    return Vector(
        "aliyun",
        c["name"],
        req,
        case_cred(c),
        req.body,
        parsed={"signed_at": at, "body": BodyPolicy.BUFFER},
        resigned=read,
        expected=expected,
        now=at,
    )


VECTORS = [
    _vector(c)
    for c in load("aliyun", "sdk.json") + load("aliyun", "doc.json")
    if c["scheme"] != "rpc-string"
]


def _replay_rpc(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    params = {
        **query,
        "AccessKeyId": "LTAIprop",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": "n-1",
        "Timestamp": stamp,
    }
    params["Signature"] = Utils.get_rpcsignature(params, "GET", sk)
    req = SigningRequest("GET", "ecs.aliyuncs.com", "/", urlencode(params), CIMultiDict())
    return ReplayCase("aliyun", req, Credential("LTAIprop", Secret(sk)), b"")


def _replay_acs3(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    body = b'{"a":1}'
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "host": "ecs.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": "n-1",
        "content-type": "application/json",
        "x-acs-content-sha256": payload,
    }
    headers["Authorization"] = sdk_acs3_authorization(
        "POST", "/", query, headers, payload, "LTAIprop", sk
    )
    req = SigningRequest(
        "POST", "ecs.aliyuncs.com", "/", urlencode(query), CIMultiDict(headers), body=body
    )
    return ReplayCase("aliyun", req, Credential("LTAIprop", Secret(sk)), body)


REPLAY = {
    "aliyun-rpc": (_replay_rpc, [respell.query_order, respell.query_padding]),
    "aliyun-acs3": (_replay_acs3, [respell.auth_fields, *respell.QUERY]),
}
