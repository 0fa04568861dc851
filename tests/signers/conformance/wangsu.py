"""Wangsu (CDNetworks): the Basic ``user:HMAC(api key, date)`` scheme, signed as the
documentation shows (``wangsu_upstream.docs_authorization``); the replay property also signs
``CNC-HMAC-SHA256`` with the wangsu SDK (``wangsu_upstream.sdk_aksk_headers``)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, SigningRequest
from tests.signers.conformance import respell
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Vector,
    any_secrets,
    case_cred,
    case_request,
    load,
)
from tests.signers.conformance.respell import ReplayCase
from tests.signers.wangsu_upstream import docs_authorization, docs_date, sdk_aksk_headers

users = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
instants = st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC))


def sign(user: str, key: str, when: datetime, algorithm: str, header: str) -> Signed:
    date = docs_date(when)
    auth = docs_authorization(user, key, date, algorithm)
    req = SigningRequest("GET", "h", "/", "", CIMultiDict({header: date, "Authorization": auth}))
    return Signed(req, Credential(user, Secret(key)))


signed = st.builds(
    sign,
    users,
    any_secrets,
    instants,
    st.sampled_from(["sha1", "sha256"]),
    st.sampled_from(["Date", "x-cnc-date"]),
)


def _dated(signed: Signed, auth: ParsedAuth) -> None:
    assert auth.signed_at is not None
    assert docs_date(auth.signed_at) in signed.req.headers.values()
    assert auth.signed_at.microsecond == 0


def _date(signed: Signed, data: st.DataObject) -> list[Signed]:
    name = "Date" if "Date" in signed.req.headers else "x-cnc-date"
    when = signers_time(signed.req.headers[name])
    out = signed.copy()
    out.req.headers[name] = docs_date(when + timedelta(seconds=data.draw(st.integers(1, 10**8))))
    return [out]


def signers_time(date: str) -> datetime:
    return datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)


def _password(signed: Signed, data: st.DataObject) -> list[Signed]:
    """One byte of the HMAC inside the Basic credential changed."""
    user, _, password = (
        base64.b64decode(signed.req.headers["Authorization"][6:]).decode().rpartition(":")
    )
    raw = bytearray(base64.b64decode(password))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    text = f"{user}:{base64.b64encode(bytes(raw)).decode()}"
    out = signed.copy()
    out.req.headers["Authorization"] = "Basic " + base64.b64encode(text.encode()).decode()
    return [out]


def _resigned(
    signed: Signed, req: SigningRequest, auth: ParsedAuth, real: Credential, now: datetime
) -> None:
    assert auth.signed_at == now.replace(microsecond=0)


b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
auth_values = st.one_of(
    st.text(max_size=100),
    st.text(max_size=60).map(lambda t: "Basic " + t),
    st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.builds(
        lambda u, p: "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode(),
        st.text(max_size=10),
        b64,
    ),
)
dates = st.one_of(st.text(max_size=40), instants.map(docs_date))


@st.composite
def garbage(draw: st.DrawFn) -> SigningRequest:
    h = CIMultiDict({"Authorization": draw(auth_values)})
    for name in ("Date", "x-cnc-date"):
        value = draw(st.none() | dates)
        if value is not None:
            h[name] = value
    return SigningRequest("GET", "h", "/", "", h)


FORMS = [
    Form(
        "wangsu",
        "wangsu",
        signed,
        reals=st.builds(lambda sk: Credential("real-user", Secret(sk)), any_secrets),
        secrets=any_secrets,
        tampers={"date": _date, "password": _password},
        garbage={"headers": Garbage(garbage())},
        on_verified=_dated,
        on_resigned=_resigned,
        nows=instants,
        examples=80,
    )
]


def _vector(c: dict[str, Any]) -> Vector:
    return Vector(
        "wangsu",
        c["name"],
        case_request(c),
        case_cred(c),
        None,
        parsed={"signed_at": signers_time(c["date"]), "body": BodyPolicy.UNSIGNED},
        resigned=lambda r: r.headers["Authorization"],
        expected=c["expected"]["authorization"],
    )


VECTORS = [_vector(c) for c in load("wangsu", "reference.json")]


def replay(query: dict[str, str], sk: str, when: datetime, method: str = "GET") -> ReplayCase:
    """A ``CNC-HMAC-SHA256`` request (GET: the query is signed; POST: the body is)."""
    host = "open.chinanetcenter.com"
    uri = f"/api/v1/refresh?{urlencode(query)}"
    body = '{"a":1}' if method == "POST" else None
    headers = sdk_aksk_headers(method, uri, host, body, "wsAK", sk, int(when.timestamp()))
    path, _, qs = uri.partition("?")
    req = SigningRequest(method, host, path, qs, CIMultiDict(headers))
    return ReplayCase(
        "wangsu", req, Credential("wsAK", Secret(sk)), body.encode() if body else None
    )


REPLAY = {"wangsu": (replay, [respell.auth_fields, respell.query_percent])}
