"""Huawei Cloud SDK-HMAC-SHA256: signed by huaweicloudsdkcore (``huawei_upstream.sdk_sign``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
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
    path_append,
    query_mark,
    text,
    tokens,
)
from tests.signers.conformance.respell import ReplayCase
from tests.signers.huawei_upstream import sdk_sign

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
queries = st.lists(st.tuples(names, text), max_size=5)
segments = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=6
)
paths = st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded"])


@st.composite
def signed(draw: st.DrawFn) -> Signed:
    token = draw(st.none() | tokens)
    cred = Credential("HPUAprop", Secret(draw(any_secrets)), Secret(token) if token else None)
    req, raw = sdk_sign(
        cred,
        method=draw(methods),
        path=draw(paths),
        query=draw(queries),
        body=draw(text),
        content_type=draw(content_types),
        when=WHEN,
    )
    return Signed(req, cred, raw)


def _body(signed: Signed, data: st.DataObject) -> list[Signed]:
    """The body, where signed: the SDK signs the literal UNSIGNED-PAYLOAD for a content type
    other than JSON, and the hash of nothing for an empty body whatever it claims."""
    unsigned = signed.req.headers.get("X-Sdk-Content-Sha256") == "UNSIGNED-PAYLOAD"
    return [] if unsigned and signed.body else body_flip(signed, data)


def _token_sent(
    signed: Signed, req: SigningRequest, auth: Any, real: Credential, now: datetime
) -> None:
    assert req.headers.get("X-Security-Token") == (real.access_token and real.access_token.reveal())


auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "SDK-HMAC-SHA256 " + t),
    st.builds(
        lambda a, h, s: f"SDK-HMAC-SHA256 Access={a}, SignedHeaders={h}, Signature={s}",
        st.text(max_size=12),
        st.lists(st.sampled_from(["host", "x-sdk-date", "content-type", "X", ""]), max_size=4).map(
            ";".join
        ),
        st.text("0123456789abcdef", min_size=60, max_size=66),
    ),
)


@st.composite
def garbage(draw: st.DrawFn) -> SigningRequest:
    headers = CIMultiDict(
        {
            "Authorization": draw(auth_values),
            "Content-Type": "a",
            "X-Sdk-Date": draw(st.text(max_size=20) | st.just("20240101T000000Z")),
        }
    )
    claimed = draw(st.none() | st.text(max_size=70) | st.just("UNSIGNED-PAYLOAD"))
    if claimed is not None:
        headers["X-Sdk-Content-Sha256"] = claimed
    length = draw(st.none() | st.text(max_size=5) | st.integers(0, 99).map(str))
    if length is not None:
        headers["Content-Length"] = length
    path = "/" + draw(st.text(max_size=30))
    return SigningRequest("GET", "h", path, draw(st.text(max_size=60)), headers)


FORMS = [
    Form(
        "huawei",
        "huawei",
        signed(),
        reals=keys("HPUAreal", any_secrets, st.none() | tokens),
        secrets=any_secrets,
        tampers={
            "body": _body,
            "content-type": header("Content-Type", "application/jsoN"),
            "x-sdk-date": header("X-Sdk-Date", "20250102T030406Z"),
            "path": path_append,
            "query": query_mark,
        },
        garbage={"input": Garbage(garbage())},
        on_resigned=_token_sent,
    )
]


def _at(sdk_date: str) -> datetime:
    return datetime.strptime(sdk_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


VECTORS = [
    Vector(
        "huawei",
        c["name"],
        case_request(c),
        case_cred(c),
        case_body(c),
        parsed={"signed_at": _at(c["sdk_date"]), "expires": None},
        resigned=lambda r: r.headers["Authorization"],
        expected=c["expected"].get("authorization") or c["request"]["headers"]["Authorization"],
        now=_at(c["sdk_date"]),
    )
    for c in load("huawei", "sdk.json") + load("huawei", "doc.json")
]


def _replay(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    cred = Credential("HPUAprop", Secret(sk))
    req, raw = sdk_sign(
        cred,
        method="POST",
        query=list(query.items()),
        body='{"a":1}',
        content_type="application/json",
        when=when,
    )
    return ReplayCase("huawei", req, cred, raw)


REPLAY = {"huawei": (_replay, [respell.auth_fields, *respell.QUERY])}
