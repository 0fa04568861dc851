"""Property tests: SDK-signed requests verify, any change breaks them, garbage is a 400."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.huawei import SIGNER
from tests.signers.huawei_upstream import sdk_sign

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
queries = st.lists(st.tuples(names, text), max_size=5)
# The SDK signs the secret as UTF-8; any non-empty text will do.
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
tokens = st.text(string.ascii_letters + string.digits + "+/=-_.", min_size=1, max_size=40)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
segments = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
                   min_size=1, max_size=6)  # fmt: skip
paths = st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded"])
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def cred(sk: str, token: str | None = None) -> Credential:
    return Credential("HPUAprop", Secret(sk), Secret(token) if token else None)


@SETTINGS
@given(methods, paths, queries, text, secrets, st.none() | tokens, content_types)
def test_sdk_signature_always_verifies(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: str,
    sk: str,
    token: str | None,
    content_type: str,
) -> None:
    c = cred(sk, token)
    req, raw = sdk_sign(c, method=method, path=path, query=query, body=body,
                        content_type=content_type, when=WHEN)  # fmt: skip
    SIGNER.verify(req, SIGNER.parse(req), c, raw)


@SETTINGS
@given(queries, text, secrets, st.data())
def test_single_change_fails(
    query: list[tuple[str, str]], body: str, sk: str, data: st.DataObject
) -> None:
    c = cred(sk)
    req, raw = sdk_sign(c, query=query, body=body, when=WHEN)
    auth = SIGNER.parse(req)
    targets = ["body", "content-type", "x-sdk-date", "path"] + (["query"] if query else [])
    target = data.draw(st.sampled_from(targets))
    if target == "body":
        if raw:
            i = data.draw(st.integers(0, len(raw) - 1))
            raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
        else:
            raw = b"x"
    elif target == "content-type":
        req.headers["Content-Type"] = "application/jsoN"
    elif target == "x-sdk-date":
        req.headers["X-Sdk-Date"] = "20250102T030406Z"
        auth = SIGNER.parse(req)
    elif target == "path":
        req.path += "x"
    else:
        i = data.draw(st.integers(0, len(query) - 1))
        req.query = "&".join(
            p + ("!" if n == i else "") for n, p in enumerate(req.query.split("&"))
        )
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
dates = st.one_of(st.text(max_size=20), st.just("20240101T000000Z"))
hashes = st.one_of(st.none(), st.text(max_size=70), st.just("UNSIGNED-PAYLOAD"))
lengths = st.one_of(st.none(), st.text(max_size=5), st.integers(0, 99).map(str))


@settings(max_examples=300, deadline=None)
@given(auth_values, dates, hashes, lengths, st.text(max_size=60), st.text(max_size=30))
def test_arbitrary_input_is_only_malformed(
    auth: str, sdk_date: str, claimed: str | None, length: str | None, query: str, path: str
) -> None:
    headers = CIMultiDict({"Authorization": auth, "X-Sdk-Date": sdk_date, "Content-Type": "a"})
    if claimed is not None:
        headers["X-Sdk-Content-Sha256"] = claimed
    if length is not None:
        headers["Content-Length"] = length
    _parse_only_malformed(SigningRequest("GET", "h", "/" + path, query, headers))


@SETTINGS
@given(queries, text, secrets, secrets, st.none() | tokens)
def test_resign_then_verify_round_trip(
    query: list[tuple[str, str]], body: str, sk: str, real_sk: str, token: str | None
) -> None:
    req, raw = sdk_sign(cred(sk), query=query, body=body, when=WHEN)
    auth = SIGNER.parse(req)
    real = Credential("HPUAreal", Secret(real_sk), Secret(token) if token else None)
    SIGNER.resign(req, auth, real, raw, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "HPUAreal"
    assert req.headers.get("X-Security-Token") == token
    SIGNER.verify(req, again, real, raw)
