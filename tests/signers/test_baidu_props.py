"""Property tests: SDK-signed requests verify, any change breaks them, garbage is a 400."""

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
from keybroker.signers.baidu import SIGNER
from keybroker.signers.base import SigningRequest
from tests.signers.baidu_upstream import sdk_sign

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: n.lower() != "authorization"
)
params = st.dictionaries(names, text, max_size=5)
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
tokens = st.text(string.ascii_letters + string.digits + "+/=-_.", min_size=1, max_size=40)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
segments = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
                   min_size=1, max_size=6)  # fmt: skip
paths = st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
lists = st.none() | st.just(["host", "x-bce-date"]) | st.just(["host"])
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def cred(sk: str, token: str | None = None) -> Credential:
    return Credential("bceprop", Secret(sk), Secret(token) if token else None)


@SETTINGS
@given(methods, paths, params, text, secrets, st.none() | tokens, lists, st.integers(1, 10**6))
def test_sdk_signature_always_verifies(
    method: str,
    path: str,
    query: dict[str, str],
    body: str,
    sk: str,
    token: str | None,
    headers_to_sign: list[str] | None,
    expiration: int,
) -> None:
    c = cred(sk, token)
    req, raw = sdk_sign(c, method=method, path=path, params=query, body=body, when=WHEN,
                        headers_to_sign=headers_to_sign, expiration=expiration)  # fmt: skip
    auth = SIGNER.parse(req)
    assert auth.expires == expiration
    SIGNER.verify(req, auth, c, raw)


@SETTINGS
@given(params, secrets, st.data())
def test_single_change_fails(query: dict[str, str], sk: str, data: st.DataObject) -> None:
    c = cred(sk)
    req, raw = sdk_sign(c, params=query, when=WHEN)
    targets = ["content-type", "x-bce-date", "path", "host", "length", "new-bce-header"]
    target = data.draw(st.sampled_from(targets + (["query"] if query else [])))
    if target == "content-type":
        req.headers["Content-Type"] = "application/jsoN"
    elif target == "x-bce-date":
        req.headers["x-bce-date"] = "2025-01-02T03:04:06Z"
    elif target == "path":
        req.path += "x"
    elif target == "host":
        req.host += "x"
    elif target == "length":
        req.headers["Content-Length"] = str(len(raw) + 1)
    elif target == "new-bce-header":
        req.headers["x-bce-" + data.draw(st.sampled_from(["acl", "meta-a", "x"]))] = "1"
    else:
        i = data.draw(st.integers(0, len(query) - 1))
        req.query = "&".join(
            p + ("!" if n == i else "") for n, p in enumerate(req.query.split("&"))
        )
    auth = SIGNER.parse(req)
    try:
        SIGNER.verify(req, auth, c, raw)
    except SignatureMismatch:
        return
    raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(secrets, secrets)
def test_other_secret_fails(sk: str, other: str) -> None:
    req, raw = sdk_sign(cred(sk), when=WHEN)
    if other == sk:
        return
    try:
        SIGNER.verify(req, SIGNER.parse(req), cred(other), raw)
    except SignatureMismatch:
        return
    raise AssertionError("a different secret verified")


def _parse_only_malformed(req: SigningRequest) -> None:
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), b"")


parts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["AK", "2024-01-01T00:00:00Z", "1800", "-1", "", "host;x-bce-date",
                     "a" * 64]),
)  # fmt: skip
auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "bce-auth-v1/" + t),
    st.lists(parts, min_size=4, max_size=7).map(lambda p: "/".join(["bce-auth-v1", *p])),
)


@settings(max_examples=300, deadline=None)
@given(auth_values, st.text(max_size=60), st.text(max_size=20), st.booleans())
def test_arbitrary_authorization_is_only_malformed(
    auth: str, query: str, md5: str, in_query: bool
) -> None:
    headers = CIMultiDict({"Content-Type": "a", "Content-MD5": md5, "x-bce-content-sha256": md5})
    if in_query:
        query = urlencode([("authorization", auth)]) + "&" + query
    else:
        headers["Authorization"] = auth
    _parse_only_malformed(SigningRequest("GET", "h", "/", query, headers))


@SETTINGS
@given(params, text, secrets, secrets, st.none() | tokens, lists)
def test_resign_then_verify_round_trip(
    query: dict[str, str],
    body: str,
    sk: str,
    real_sk: str,
    token: str | None,
    headers_to_sign: list[str] | None,
) -> None:
    req, raw = sdk_sign(cred(sk), params=query, body=body, when=WHEN,
                        headers_to_sign=headers_to_sign)  # fmt: skip
    auth = SIGNER.parse(req)
    real = Credential("bcereal", Secret(real_sk), Secret(token) if token else None)
    SIGNER.resign(req, auth, real, raw, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "bcereal" and again.expires == auth.expires
    assert req.headers.get("x-bce-security-token") == token
    SIGNER.verify(req, again, real, raw)
