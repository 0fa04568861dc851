"""JD Cloud JDCLOUD2/JDCLOUD3-HMAC-SHA256: signed by the jdcloud SDKs
(``jingdong_upstream.sdk_sign``)."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.jingdong import JingdongSigner
from tests.signers.conformance import respell
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    body_flip,
    case_body,
    case_request,
    changed,
    header,
    keys,
    load,
    methods,
)
from tests.signers.conformance.respell import ReplayCase
from tests.signers.jingdong_upstream import sdk_sign

HOST = "vm.jdcloud-api.com"
algorithms = st.sampled_from(["JDCLOUD2-HMAC-SHA256", "JDCLOUD3-HMAC-SHA256"])
names = st.text(string.ascii_letters + string.digits + "._", min_size=1, max_size=8)
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="="), max_size=8)
queries = st.dictionaries(names, values, max_size=4).map(lambda d: list(d.items()))
paths = st.lists(
    st.text(string.ascii_letters + string.digits + "-_:", min_size=1, max_size=8), max_size=3
).map(lambda s: "/v1/" + "/".join(s))
bodies = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
secrets = st.text(string.ascii_letters + string.digits + "+/=", min_size=1, max_size=40)


def sign(
    alg: str, method: str, path: str, query: list[tuple[str, str]], body: str, sk: str
) -> Signed:
    qs = urlencode(query)
    url = f"https://{HOST}{path}" + (f"?{qs}" if qs else "")
    headers = {"Content-Type": "application/json"}
    sdk_sign(
        alg,
        method,
        url,
        headers,
        body,
        "JDC_AK",
        sk,
        region="cn-north-1",
        service="vm",
        x_date="20240102T030405Z",
        nonce="prop-nonce",
    )
    req = SigningRequest(method, HOST, path, qs, CIMultiDict(headers))
    return Signed(req, Credential("JDC_AK", Secret(sk)), body.encode())


signed = st.builds(sign, algorithms, methods, paths, queries, bodies, secrets)


def _body(signed: Signed, data: st.DataObject) -> list[Signed]:
    """The body itself hashed (no claimed hash header), one byte changed."""
    out = signed.copy()
    out.req.headers.popall("x-jdcloud-content-sha256", None)
    return body_flip(out, data)


def _query(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, query=signed.req.query + ("&" if signed.req.query else "") + "zz=1")


auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "JDCLOUD2-HMAC-SHA256 " + t),
    st.builds(
        lambda a, c, h, s: f"{a} Credential={c}, SignedHeaders={h}, Signature={s}",
        algorithms,
        st.lists(
            st.sampled_from(
                [
                    "AK",
                    "20240101",
                    "cn-north-1",
                    "vm",
                    "jdcloud2_request",
                    "jdcloud3_request",
                    "",
                    "x/y",
                ]
            ),
            max_size=7,
        ).map("/".join),
        st.lists(
            st.sampled_from(["host", "x-jdcloud-date", "x-jdcloud-nonce", "content-type", "X", ""]),
            max_size=4,
        ).map(";".join),
        st.text("0123456789abcdef", min_size=62, max_size=66),
    ),
)
garbage = st.builds(
    lambda a, d, q, p: SigningRequest(
        "GET",
        HOST,
        "/" + p,
        q,
        CIMultiDict(
            {"Authorization": a, "x-jdcloud-date": d, "x-jdcloud-nonce": "n", "Content-Type": "a"}
        ),
    ),
    auth_values,
    st.text(max_size=20) | st.just("20240101T000000Z"),
    st.text(max_size=40),
    st.text(max_size=20),
)

FORMS = [
    Form(
        "jingdong",
        "jingdong",
        signed,
        reals=keys("JDC_REAL", secrets),
        secrets=secrets,
        tampers={
            "body": _body,
            "query": _query,
            "path": lambda s, d: changed(s, path="/v1/y"),
            "content-type": header("Content-Type", "application/jsoN"),
        },
        garbage={"authorization": Garbage(garbage, examples=400)},
        examples=50,
    )
]


def _at(x_date: str) -> datetime:
    return datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _vector(c: dict[str, Any]) -> Vector:
    req = case_request(c)
    token = req.headers.get("x-jdcloud-security-token")
    cred = Credential(
        c["credential"]["access_key"],
        Secret(c["credential"]["secret_key"]),
        Secret(token) if token else None,
    )
    return Vector(
        "jingdong",
        c["name"],
        req,
        cred,
        case_body(c),
        parsed={"region": c["region"], "service": c["service"], "signed_at": _at(c["x_date"])},
        # the same nonce too: the SDK's Authorization and nonce, byte for byte
        resigned=lambda r: (r.headers["Authorization"], r.headers["x-jdcloud-nonce"]),
        expected=(c["expected"]["authorization"], c["nonce"]),
        now=_at(c["x_date"]),
        signer=JingdongSigner(nonce=lambda: str(c["nonce"])),
    )


VECTORS = [_vector(c) for c in load("jingdong", "sdk.json") + load("jingdong", "doc.json")]


def _replay(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    qs = urlencode(query)
    headers = {"Content-Type": "application/json"}
    sdk_sign(
        "JDCLOUD2-HMAC-SHA256",
        "POST",
        f"https://{HOST}/v1/x?{qs}",
        headers,
        '{"a":1}',
        "JDC_AK",
        sk,
        region="cn-north-1",
        service="vm",
        x_date=when.strftime("%Y%m%dT%H%M%SZ"),
        nonce="n-1",
    )
    req = SigningRequest("POST", HOST, "/v1/x", qs, CIMultiDict(headers))
    return ReplayCase("jingdong", req, Credential("JDC_AK", Secret(sk)), b'{"a":1}')


REPLAY = {"jingdong": (_replay, [respell.auth_fields, respell.query_order, respell.query_padding])}
