"""Kingsoft Cloud: AWS SigV4 on the wire; its SDK signs with ``requests-aws4auth``."""

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
from tests.signers.conformance import respell
from tests.signers.conformance.aws import replay_maker
from tests.signers.conformance.base import Form, Garbage, Signed, Vector, case_cred, keys, load

X_DATE = "20240304T050607Z"
secrets = st.text(string.ascii_letters + string.digits + "/+", min_size=1, max_size=40)


def sdk_sign(
    method: str = "GET",
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    cred: Credential | None = None,
    host: str = "iam.api.ksyun.com",
    x_date: str = X_DATE,
    service: str = "iam",
) -> SigningRequest:
    """What Kingsoft's SDK puts on the wire: form-encoded query, AWS4Auth signature."""
    import requests
    from requests_aws4auth import AWS4Auth

    cred = cred or Credential("AKLTproxyKEY", Secret("proxy-secret-value"))
    qs = urlencode(query if query is not None else [("Action", "ListUsers"), ("Name", "a b")])
    url = f"http://{host}/" + (f"?{qs}" if qs else "")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Host": host,
        "X-Amz-Date": x_date,
    }
    prepared = requests.Request(method, url, headers=headers, data=body or None).prepare()
    auth = AWS4Auth(cred.access_key, cred.secret_key.reveal(), "cn-beijing-6", service)
    auth.regenerate_signing_key(date=x_date[:8])
    auth(prepared)
    sent = CIMultiDict(
        {k: v for k, v in prepared.headers.items() if k.lower() not in ("host", "content-length")}
    )
    return SigningRequest(method, host, "/", qs, sent, "http")


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
queries = st.dictionaries(st.text("abcXYZ._-", min_size=1, max_size=6), text, max_size=4)


def sign(query: dict[str, str], value: str, sk: str) -> Signed:
    cred = Credential("AKLTproxyKEY", Secret(sk))
    return Signed(sdk_sign("GET", [*query.items(), ("V", value)], cred=cred), cred, b"")


def _value(signed: Signed, data: st.DataObject) -> list[Signed]:
    """One parameter's value with ``!`` appended (``+`` read as a space, ``%2B`` a plus)."""
    from urllib.parse import parse_qsl

    pairs = parse_qsl(signed.req.query, keep_blank_values=True)
    i = data.draw(st.integers(0, len(pairs) - 1))
    pairs[i] = (pairs[i][0], pairs[i][1] + "!")
    out = signed.copy()
    out.req.query = urlencode(pairs)
    return [out]


garbage = st.builds(
    lambda a, d, q: SigningRequest(
        "GET", "h", "/", q, CIMultiDict({"Authorization": "AWS4-HMAC-SHA256 " + a, "X-Amz-Date": d})
    ),
    st.text(max_size=200),
    st.text(max_size=20),
    st.text(max_size=40),
)

FORMS = [
    Form(
        "ksyun",
        "ksyun",
        st.builds(sign, queries, st.text("abc xyz+/%&=ü", max_size=20), secrets),
        reals=keys("AKLTrealKEY", secrets),
        secrets=secrets,
        tampers={"value": _value},
        garbage={"authorization": Garbage(garbage, examples=200)},
        also_detected_by=frozenset({"aws"}),  # one wire format: the account decides
        examples=40,
    )
]


def _vector(c: dict[str, Any]) -> Vector:
    r = c["request"]
    headers = CIMultiDict({k: v for k, v in r["headers"].items() if k.lower() != "host"})
    req = SigningRequest(r["method"], r["host"], r["path"], r["query"], headers)
    at = datetime.strptime(c["x_date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return Vector(
        "ksyun",
        c["name"],
        req,
        case_cred(c),
        r["body"].encode(),
        parsed={"region": c["region"], "service": c["service"]},
        resigned=lambda out: out.headers["Authorization"],
        expected=c["expected"]["authorization"],
        now=at,
    )


VECTORS = [_vector(c) for c in load("ksyun", "sdk.json") + load("ksyun", "doc.json")]
REPLAY = {
    "ksyun": (
        replay_maker("kec", vendor="ksyun"),
        [respell.auth_fields, respell.hex_case, respell.query_padding, respell.query_percent],
    ),
}
