"""Volcengine HMAC-SHA256: signed by volcenginesdkcore's ``SignerV4``."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import strategies as st
from multidict import CIMultiDict
from volcenginesdkcore.signv4 import SignerV4

from keybroker.credentials import Credential
from keybroker.errors import SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from keybroker.signers.volcengine import SIGNER
from tests.signers.conformance import respell
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    any_secrets,
    body_flip,
    case_body,
    case_cred,
    case_request,
    header,
    keys,
    load,
    methods,
    text,
    tokens,
)
from tests.signers.conformance.respell import ReplayCase

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: not n.startswith("X-")
)
queries = st.dictionaries(names, text, max_size=5).map(lambda d: list(d.items()))


def sign(
    method: str, query: list[tuple[str, str]], body: str, sk: str, token: str | None = None
) -> Signed:
    headers = {"Host": "open.volcengineapi.com", "Content-Type": "application/json"}
    SignerV4.sign(
        "/", method, headers, body, None, list(query), "AKprop", sk, "cn-beijing", "ecs", token
    )
    req = SigningRequest(
        method, "open.volcengineapi.com", "/", urlencode(query), CIMultiDict(headers)
    )
    return Signed(req, Credential("AKprop", Secret(sk)), body.encode())


signed = st.builds(sign, methods, queries, text, any_secrets, st.none() | tokens)


def buffered(auth: ParsedAuth) -> ParsedAuth:
    return replace(auth, body=BodyPolicy.BUFFER, payload_sha256=None)


def _buffered_too(signed: Signed, auth: ParsedAuth) -> None:
    """The body the SDK hashed verifies in BUFFER mode too, and one byte more does not."""
    SIGNER.verify(signed.req, buffered(auth), signed.cred, signed.body)
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(signed.req, buffered(auth), signed.cred, (signed.body or b"") + b" ")


def _resigned(
    signed: Signed, req: SigningRequest, auth: ParsedAuth, real: Credential, now: datetime
) -> None:
    assert auth.payload_sha256 == hashlib.sha256(signed.body or b"").hexdigest()


def _query(signed: Signed, data: st.DataObject) -> list[Signed]:
    pairs = parse_qsl(signed.req.query, keep_blank_values=True)
    if not pairs:
        return []
    i = data.draw(st.integers(0, len(pairs) - 1))
    pairs[i] = (pairs[i][0], pairs[i][1] + "!")
    out = signed.copy()
    out.req.query = urlencode(pairs)
    return [out]


auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "HMAC-SHA256 " + t),
    st.builds(
        lambda c, h, s: f"HMAC-SHA256 Credential={c}, SignedHeaders={h}, Signature={s}",
        st.lists(st.text(max_size=12), min_size=1, max_size=7).map("/".join),
        st.lists(st.sampled_from(["host", "x-date", "content-type", "X", ""]), max_size=4).map(
            ";".join
        ),
        st.text("0123456789abcdef", min_size=60, max_size=66),
    ),
)
x_dates = st.one_of(st.text(max_size=20), st.just("20240101T000000Z"))
header_garbage = st.builds(
    lambda a, d, q: SigningRequest(
        "GET", "h", "/", q, CIMultiDict({"Authorization": a, "X-Date": d, "Content-Type": "a"})
    ),
    auth_values,
    x_dates,
    st.text(max_size=60),
)
presign_keys = st.sampled_from(
    [
        "X-Algorithm",
        "X-Credential",
        "X-Date",
        "X-Signature",
        "X-SignedQueries",
        "X-SignedHeaders",
        "X-Expires",
        "X-NotSignBody",
        "X-Security-Token",
        "Action",
    ]
)
presign_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "HMAC-SHA256",
            "AK/20240101/cn-beijing/iam/request",
            "20240101T000000Z",
            "a" * 64,
            "X-Algorithm;X-Credential;X-Date;X-SignedQueries",
            "host",
            "900",
        ]
    ),
)
presigned_garbage = st.lists(st.tuples(presign_keys, presign_values), max_size=10).map(
    lambda pairs: SigningRequest("GET", "h", "/", urlencode(pairs))
)

FORMS = [
    Form(
        "volcengine",
        "volcengine",
        signed,
        reals=keys("AKreal", any_secrets),
        secrets=any_secrets,
        tampers={
            "body": body_flip,
            "content-type": header("Content-Type", "application/jsoN"),
            "query": _query,
        },
        garbage={
            "authorization": Garbage(header_garbage),
            "presigned-query": Garbage(presigned_garbage),
        },
        on_verified=_buffered_too,
        on_resigned=_resigned,
    )
]


def _at(x_date: str) -> datetime:
    return datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _vector(c: dict[str, Any]) -> Vector:
    if c["form"] == "header":
        read: Any = lambda r: r.headers["Authorization"]  # noqa: E731
        expected = c["expected"]["authorization"]
    else:
        read, expected = (
            lambda r: dict(parse_qsl(r.query))["X-Signature"],
            c["expected"]["signature"],
        )
    return Vector(
        "volcengine",
        c["name"],
        case_request(c),
        case_cred(c),
        case_body(c),
        parsed={"region": c["region"], "service": c["service"], "signed_at": _at(c["x_date"])},
        resigned=read,
        expected=expected,
        now=_at(c["x_date"]),
    )


VECTORS = [_vector(c) for c in load("volcengine", "sdk.json") + load("volcengine", "doc.json")]


def _replay(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    del when  # the SDK signs at its own now; other keys come from other secrets
    headers = {"Host": "open.volcengineapi.com", "Content-Type": "application/json"}
    pairs = list(query.items())
    SignerV4.sign(
        "/", "POST", headers, '{"a":1}', None, pairs, "AKprop", sk, "cn-beijing", "ecs", None
    )
    req = SigningRequest(
        "POST", "open.volcengineapi.com", "/", urlencode(pairs), CIMultiDict(headers)
    )
    return ReplayCase("volcengine", req, Credential("AKprop", Secret(sk)), b'{"a":1}')


REPLAY = {"volcengine": (_replay, [respell.auth_fields, *respell.QUERY])}
