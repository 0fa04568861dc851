"""Qiniu QBox and Qiniu (MAC) tokens: signed by the qiniu SDK's token functions."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st
from multidict import CIMultiDict
from qiniu import Auth, QiniuMacAuth

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from tests.signers.conformance import respell
from tests.signers.conformance.base import (
    Form,
    Garbage,
    Signed,
    Tamper,
    Vector,
    any_secrets,
    body_flip,
    case_request,
    keys,
    load,
)
from tests.signers.conformance.respell import ReplayCase

FORM = "application/x-www-form-urlencoded"
segments = st.text(string.ascii_letters + string.digits + "-_.~=", min_size=1, max_size=12)
paths = st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
queries = st.dictionaries(segments, st.text(max_size=10), max_size=4).map(
    lambda d: "&".join(f"{k}={quote(v, safe='')}" for k, v in d.items())
)
schemes = st.sampled_from(["QBox", "Qiniu"])


def latin(body: bytes) -> bytes:
    # The SDK signs str bodies as UTF-8; give it bodies whose latin-1 text is that UTF-8.
    return body.decode("latin-1").encode("utf-8")


def sign(scheme: str, path: str, query: str, body: bytes, sk: str) -> Signed:
    """Sign with the SDK's token functions, as its requests hooks do."""
    url = f"https://rs.qiniuapi.com{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": FORM, "X-Qiniu-Date": "20240101T000000Z"}
    if scheme == "QBox":
        token = Auth("AKprop", sk).token_of_request(url, body.decode("latin-1"), FORM)
    else:
        mac = QiniuMacAuth("AKprop", sk)
        token = mac.token_of_request(
            "POST", None, url, mac.qiniu_headers(headers), FORM, body.decode("latin-1")
        )
    headers["Authorization"] = f"{scheme} {token}"
    req = SigningRequest("POST", "rs.qiniuapi.com", path, query, CIMultiDict(headers))
    return Signed(req, Credential("AKprop", Secret(sk)), latin(body))


signed = st.builds(sign, schemes, paths, queries, st.binary(min_size=1, max_size=64), any_secrets)


def char(attr: str) -> Tamper:
    """One character of ``attr`` (path, query, host) changed."""

    def tamper(signed: Signed, data: st.DataObject) -> list[Signed]:
        value = getattr(signed.req, attr)
        if not value or (attr == "host" and signed.req.headers["Authorization"].startswith("QBox")):
            return []  # QBox signs no host
        i = data.draw(st.integers(0, len(value) - 1))
        out = signed.copy()
        setattr(out.req, attr, value[:i] + ("X" if value[i] != "X" else "Y") + value[i + 1 :])
        return [out]

    return tamper


auth_values = st.one_of(
    st.text(max_size=120),
    st.builds(
        lambda s, t: f"{s} {t}", st.sampled_from(["QBox", "Qiniu", "qbox"]), st.text(max_size=80)
    ),
    st.builds(
        lambda s, a, g: f"{s} {a}:{g}",
        st.sampled_from(["QBox", "Qiniu"]),
        st.text(max_size=20),
        st.text(string.ascii_letters + "-_=+/", max_size=30),
    ),
)


@st.composite
def garbage(draw: st.DrawFn) -> SigningRequest:
    headers = CIMultiDict({"Authorization": draw(auth_values)})
    x_date = draw(st.none() | st.text(max_size=20))
    if x_date is not None:
        headers["X-Qiniu-Date"] = x_date
    return SigningRequest("GET", "rs.qiniuapi.com", "/", draw(st.text(max_size=40)), headers)


FORMS = [
    Form(
        "qiniu",
        "qiniu",
        signed,
        reals=keys("AKreal", any_secrets),
        secrets=any_secrets,
        tampers={
            "body": body_flip,
            "path": char("path"),
            "query": char("query"),
            "host": char("host"),
        },
        garbage={"authorization": Garbage(garbage())},
        upstream_host="rsf.qbox.me",
        examples=80,
    )
]


def _vector(c: dict[str, Any]) -> Vector:
    dated = c.get("x_qiniu_date")
    at = datetime.strptime(dated, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if dated else None
    return Vector(
        "qiniu",
        c["name"],
        case_request(c),
        Credential(c["credential"]["access_key"], Secret(c["credential"]["secret_key"])),
        c["request"]["body"].encode(),
        parsed={"signed_at": at},
        resigned=lambda r: r.headers["Authorization"],
        expected=c["expected"]["authorization"],
        now=at or datetime(2030, 1, 1, tzinfo=UTC),
    )


VECTORS = [_vector(c) for c in load("qiniu", "sdk.json") + load("qiniu", "doc.json")]


def replay(query: dict[str, str], sk: str, when: datetime) -> ReplayCase:
    qs = urlencode(query)
    url = f"https://rs.qiniuapi.com/stat/x?{qs}"
    headers = {"Content-Type": FORM, "X-Qiniu-Date": when.strftime("%Y%m%dT%H%M%SZ")}
    mac = QiniuMacAuth("AKprop", sk)
    token = mac.token_of_request("POST", None, url, mac.qiniu_headers(headers), FORM, "a=1")
    headers["Authorization"] = f"Qiniu {token}"
    req = SigningRequest("POST", "rs.qiniuapi.com", "/stat/x", qs, CIMultiDict(headers))
    return ReplayCase("qiniu", req, Credential("AKprop", Secret(sk)), b"a=1")


REPLAY = {"qiniu": (replay, [respell.b64_padding])}
