"""Akamai EdgeGrid EG1-HMAC-SHA256: signed by edgegrid-python; Akamai's published test suite."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from akamai.edgegrid import EdgeGridAuth
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.akamai import AkamaiSigner
from keybroker.signers.base import BodyPolicy, SigningRequest
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    body_flip,
    changed,
    load,
    path_append,
)
from tests.signers.conformance.respell import ReplayCase

HOST = "akab-prop.luna.akamaiapis.net"
ids = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=30)
secrets = st.text(string.ascii_letters + string.digits + "+/=", min_size=1, max_size=44)
segments = st.lists(
    st.text(string.ascii_letters + string.digits + "-_.~%20", max_size=8), max_size=4
).map(lambda s: "/" + "/".join(s))
queries = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=6), st.text(max_size=8), max_size=4
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])


def cred(client_token: str, access_token: str, client_secret: str) -> Credential:
    return Credential(
        "",
        Secret(""),
        access_token=Secret(access_token),
        client_token=Secret(client_token),
        client_secret=Secret(client_secret),
    )


def with_secret(c: Credential, secret: str) -> Credential:
    assert c.client_token is not None and c.access_token is not None
    return cred(c.client_token.reveal(), c.access_token.reveal(), secret)


def other_client(c: Credential) -> Credential:
    assert c.client_token is not None and c.access_token is not None and c.client_secret
    return cred(c.client_token.reveal() + "x", c.access_token.reveal(), c.client_secret.reveal())


def sign(
    method: str, path: str, query: dict[str, str], body: bytes, ct: str, at: str, cs: str
) -> Signed:
    auth = EdgeGridAuth(client_token=ct, client_secret=cs, access_token=at)
    prepared = requests.Request(
        method, f"https://{HOST}{path}", params=query, data=body, auth=auth
    ).prepare()
    parts = urlsplit(prepared.url)
    req = SigningRequest(method, HOST, parts.path, parts.query, CIMultiDict(prepared.headers))
    return Signed(req, cred(ct, at, cs), body)


signed = st.builds(sign, methods, segments, queries, st.binary(max_size=64), ids, ids, secrets)


def _body(signed: Signed, data: st.DataObject) -> list[Signed]:
    """EdgeGrid signs a POST body (up to max_body) only."""
    return body_flip(signed, data) if signed.req.method == "POST" and signed.body else []


def _query(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, query=signed.req.query + ("&z=1" if signed.req.query else "z=1"))


field_names = st.sampled_from(
    ["client_token", "access_token", "timestamp", "nonce", "signature", "x", ""]
)
field_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["20240101T00:00:00+0000", "A" * 43 + "=", "akab-1", ""]),
)
auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "EG1-HMAC-SHA256 " + t),
    st.lists(st.tuples(field_names, field_values), max_size=7).map(
        lambda kv: "EG1-HMAC-SHA256 " + ";".join(f"{k}={v}" for k, v in kv)
    ),
)
garbage = st.builds(
    lambda a, q, m: SigningRequest(m, HOST, "/", q, CIMultiDict({"Authorization": a})),
    auth_values,
    st.text(max_size=40),
    methods,
)

FORMS = [
    Form(
        "akamai",
        "akamai",
        signed,
        reals=st.builds(cred, ids, ids, secrets),
        secrets=secrets,
        tampers={
            "body": _body,
            "path": path_append,
            "query": _query,
            "host": lambda s, d: changed(s, host="akab-prox.luna.akamaiapis.net"),
            "scheme": lambda s, d: changed(s, scheme="http"),
            "method": lambda s, d: changed(s, method="PUT" if s.req.method != "PUT" else "POST"),
        },
        garbage={"authorization": Garbage(garbage, examples=400)},
        with_secret=with_secret,
        other_key=other_client,
    )
]


def at(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y%m%dT%H:%M:%S+0000").replace(tzinfo=UTC)


def body_of(case: dict[str, Any]) -> bytes:
    body = case["request"]["body"]
    if isinstance(body, dict):
        return (body["repeat"] * body["times"]).encode()
    return str(body).encode()


def vector_request(case: dict[str, Any]) -> SigningRequest:
    r = case["request"]
    headers: CIMultiDict[str] = CIMultiDict([(k, v) for k, v in r["headers"]])
    return SigningRequest(r["method"], r["host"], r["path"], r["query"], headers, r["scheme"])


DOC = load("akamai", "doc.json")
S = DOC["settings"]
#: the signer as Akamai's test suite configures it (signed headers, max body, nonce)
DOC_SIGNER = AkamaiSigner(
    headers_to_sign=tuple(S["headers_to_sign"]),
    max_body=S["max_body"],
    nonce=lambda: str(S["nonce"]),
)
DOC_CRED = cred(S["client_token"], S["access_token"], S["client_secret"])


def _doc(c: dict[str, Any]) -> Vector:
    return Vector(
        "akamai",
        c["name"],
        vector_request(c),
        DOC_CRED,
        body_of(c),
        parsed={"signed_at": at(S["timestamp"])},
        resigned=lambda r: r.headers["Authorization"],
        expected=c["expected"]["authorization"],
        now=at(S["timestamp"]),
        signer=DOC_SIGNER,
        wrong=with_secret(DOC_CRED, "x" + S["client_secret"]),
    )


def _sdk(c: dict[str, Any]) -> Vector:
    req, cr = vector_request(c), cred(**c["credential"])
    policy = BodyPolicy.BUFFER if req.method == "POST" else BodyPolicy.UNSIGNED
    return Vector(
        "akamai",
        c["name"],
        req,
        cr,
        body_of(c),
        parsed={"body": policy},
        resigned=lambda r: r.headers["Authorization"],
        expected=c["expected"]["authorization"],
        now=at(c["timestamp"]),
        signer=AkamaiSigner(nonce=lambda: str(c["nonce"])),
        wrong=with_secret(cr, "x" + c["credential"]["client_secret"]),
    )


VECTORS = [_doc(c) for c in DOC["cases"]] + [_sdk(c) for c in load("akamai", "sdk.json")]


def replay(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    del when  # the SDK signs at its own now
    auth = EdgeGridAuth(client_token="ct-prop", client_secret=sk, access_token="at-prop")
    prepared = requests.Request(
        "POST", f"https://{HOST}/papi/v1/x", params=query, data=b'{"a":1}', auth=auth
    ).prepare()
    path, _, qs = str(prepared.url).split(HOST, 1)[1].partition("?")
    req = SigningRequest("POST", HOST, path, qs, CIMultiDict(prepared.headers))
    return ReplayCase("akamai", req, cred("ct-prop", "at-prop", sk), b'{"a":1}')


REPLAY = {"akamai": (replay, [])}
