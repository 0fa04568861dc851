"""Property tests: SDK-signed requests (both algorithms) verify, any single change breaks
them, re-signed requests verify, and garbage raises nothing but MalformedSignature."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.jingdong import SIGNER
from tests.signers.jingdong_upstream import sdk_sign

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])


def sign(
    alg: str, method: str, path: str, query: list[tuple[str, str]], body: str, sk: str
) -> tuple[SigningRequest, Credential]:
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
    return SigningRequest(method, HOST, path, qs, CIMultiDict(headers)), Credential(
        "JDC_AK", Secret(sk)
    )


@SETTINGS
@given(algorithms, methods, paths, queries, bodies, secrets)
def test_sdk_signature_always_verifies(
    alg: str, method: str, path: str, query: list[tuple[str, str]], body: str, sk: str
) -> None:
    req, cred = sign(alg, method, path, query, body, sk)
    SIGNER.verify(req, SIGNER.parse(req), cred, body.encode())


@SETTINGS
@given(algorithms, queries, bodies, secrets, st.data())
def test_single_change_fails(
    alg: str, query: list[tuple[str, str]], body: str, sk: str, data: st.DataObject
) -> None:
    req, cred = sign(alg, "POST", "/v1/x", query, body, sk)
    raw = body.encode()
    req.headers.popall("x-jdcloud-content-sha256", None)  # hash the body itself
    auth = SIGNER.parse(req)
    target = data.draw(st.sampled_from(["body", "query", "path", "content-type", "secret"]))
    if target == "body":
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
        else:
            raw = b"x"
    elif target == "query":
        req.query = urlencode([*query, ("zz", "1")])
    elif target == "path":
        req.path = "/v1/y"
    elif target == "content-type":
        req.headers["Content-Type"] = "application/jsoN"
    else:
        cred = Credential("JDC_AK", Secret(sk + "x"))
    try:
        SIGNER.verify(req, auth, cred, raw)
    except SignatureMismatch:
        return
    raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(algorithms, queries, bodies, secrets, secrets)
def test_resign_then_verify_round_trip(
    alg: str, query: list[tuple[str, str]], body: str, sk: str, real_sk: str
) -> None:
    req, cred = sign(alg, "POST", "/v1/x:y", query, body, sk)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, cred, body.encode())
    real = Credential("JDC_REAL", Secret(real_sk))
    SIGNER.resign(req, auth, real, body.encode(), datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "JDC_REAL"
    SIGNER.verify(req, again, real, body.encode())


def _only_malformed(req: SigningRequest) -> None:
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), b"")


auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "JDCLOUD2-HMAC-SHA256 " + t),
    st.builds(
        lambda a, c, h, s: f"{a} Credential={c}, SignedHeaders={h}, Signature={s}",
        st.sampled_from(["JDCLOUD2-HMAC-SHA256", "JDCLOUD3-HMAC-SHA256"]),
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
dates = st.one_of(st.text(max_size=20), st.just("20240101T000000Z"))


@settings(max_examples=400, deadline=None)
@given(auth_values, dates, st.text(max_size=40), st.text(max_size=20))
def test_arbitrary_authorization_is_only_malformed(
    auth: str, x_date: str, query: str, path: str
) -> None:
    headers = {
        "Authorization": auth,
        "x-jdcloud-date": x_date,
        "x-jdcloud-nonce": "n",
        "Content-Type": "a",
    }
    _only_malformed(SigningRequest("GET", HOST, "/" + path, query, CIMultiDict(headers)))
