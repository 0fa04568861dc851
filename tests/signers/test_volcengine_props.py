"""Property tests: SDK-signed requests verify, any change breaks them, garbage is a 400."""

from __future__ import annotations

import contextlib
import hashlib
import string
from datetime import UTC, datetime
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from volcenginesdkcore.signv4 import SignerV4

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, SigningRequest
from keybroker.signers.volcengine import SIGNER

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: not n.startswith("X-")
)
queries = st.dictionaries(names, text, max_size=5).map(lambda d: list(d.items()))
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
# Header values travel trimmed (HTTP drops surrounding whitespace), so tokens are token-like.
tokens = st.text(string.ascii_letters + string.digits + "+/=-_.", min_size=1, max_size=40)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])


def sign(
    method: str, query: list[tuple[str, str]], body: str, sk: str, token: str | None = None
) -> tuple[SigningRequest, Credential]:
    headers = {"Host": "open.volcengineapi.com", "Content-Type": "application/json"}
    SignerV4.sign("/", method, headers, body, None, list(query), "AKprop", sk, "cn-beijing",
                  "ecs", token)  # fmt: skip
    req = SigningRequest(method, "open.volcengineapi.com", "/", urlencode(query),
                         CIMultiDict(headers))  # fmt: skip
    return req, Credential("AKprop", Secret(sk))


@SETTINGS
@given(methods, queries, text, secrets, st.none() | tokens)
def test_sdk_signature_always_verifies(
    method: str, query: list[tuple[str, str]], body: str, sk: str, token: str | None
) -> None:
    req, cred = sign(method, query, body, sk, token)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, cred, None)
    # And in BUFFER mode, with the body itself.
    SIGNER.verify(req, _buffered(auth), cred, body.encode())


def _buffered(auth):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(auth, body=BodyPolicy.BUFFER, payload_sha256=None)


@SETTINGS
@given(queries, text, secrets, st.data())
def test_single_change_fails(
    query: list[tuple[str, str]], body: str, sk: str, data: st.DataObject
) -> None:
    req, cred = sign("POST", query, body, sk)
    auth = _buffered(SIGNER.parse(req))
    raw = body.encode()
    targets = ["body", "content-type"] + (["query"] if query else [])
    target = data.draw(st.sampled_from(targets))
    if target == "body":
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
        else:
            raw = b"x"
    elif target == "content-type":
        req.headers["Content-Type"] = "application/jsoN"
    else:
        i = data.draw(st.integers(0, len(query) - 1))
        name, value = query[i]
        query = [*query[:i], (name, value + "!"), *query[i + 1 :]]
        req.query = urlencode(query)
    try:
        SIGNER.verify(req, auth, cred, raw)
    except SignatureMismatch:
        return
    raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(secrets, secrets)
def test_other_secret_fails(sk: str, other: str) -> None:
    req, _ = sign("POST", [("Action", "A")], "{}", sk)
    if other == sk:
        return
    try:
        SIGNER.verify(req, SIGNER.parse(req), Credential("AKprop", Secret(other)), None)
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


@settings(max_examples=300, deadline=None)
@given(auth_values, x_dates, st.text(max_size=60))
def test_arbitrary_authorization_is_only_malformed(auth: str, x_date: str, query: str) -> None:
    headers = CIMultiDict({"Authorization": auth, "X-Date": x_date, "Content-Type": "a"})
    _parse_only_malformed(SigningRequest("GET", "h", "/", query, headers))


presign_keys = st.sampled_from(
    ["X-Algorithm", "X-Credential", "X-Date", "X-Signature", "X-SignedQueries",
     "X-SignedHeaders", "X-Expires", "X-NotSignBody", "X-Security-Token", "Action"]
)  # fmt: skip
presign_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["HMAC-SHA256", "AK/20240101/cn-beijing/iam/request", "20240101T000000Z",
                     "a" * 64, "X-Algorithm;X-Credential;X-Date;X-SignedQueries", "host", "900"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(presign_keys, presign_values), max_size=10))
def test_arbitrary_presigned_query_is_only_malformed(pairs: list[tuple[str, str]]) -> None:
    _parse_only_malformed(SigningRequest("GET", "h", "/", urlencode(pairs)))


@SETTINGS
@given(queries, text, secrets, secrets)
def test_resign_then_verify_round_trip(
    query: list[tuple[str, str]], body: str, sk: str, real_sk: str
) -> None:
    req, _ = sign("POST", query, body, sk)
    auth = SIGNER.parse(req)
    real = Credential("AKreal", Secret(real_sk))
    SIGNER.resign(req, auth, real, body.encode(), datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "AKreal"
    assert again.payload_sha256 == hashlib.sha256(body.encode()).hexdigest()
    SIGNER.verify(req, again, real, None)
