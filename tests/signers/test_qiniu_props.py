"""Property tests: SDK-signed Qiniu requests verify, any change breaks them, garbage is a 400."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from qiniu import Auth, QiniuMacAuth

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.qiniu import SIGNER

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORM = "application/x-www-form-urlencoded"

secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
segments = st.text(string.ascii_letters + string.digits + "-_.~=", min_size=1, max_size=12)
paths = st.lists(segments, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
queries = st.dictionaries(segments, st.text(max_size=10), max_size=4).map(
    lambda d: "&".join(f"{k}={quote(v, safe='')}" for k, v in d.items())
)
bodies = st.binary(min_size=1, max_size=64)
schemes = st.sampled_from(["QBox", "Qiniu"])


def sign(scheme: str, path: str, query: str, body: bytes, sk: str) -> SigningRequest:
    """Sign with the SDK's token functions, as its requests hooks do."""
    url = f"https://rs.qiniuapi.com{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": FORM, "X-Qiniu-Date": "20240101T000000Z"}
    if scheme == "QBox":
        token = Auth("AKprop", sk).token_of_request(url, body.decode("latin-1"), FORM)
    else:
        mac = QiniuMacAuth("AKprop", sk)
        token = mac.token_of_request("POST", None, url, mac.qiniu_headers(headers), FORM,
                                     body.decode("latin-1"))  # fmt: skip
    headers["Authorization"] = f"{scheme} {token}"
    return SigningRequest("POST", "rs.qiniuapi.com", path, query, CIMultiDict(headers))


def latin(body: bytes) -> bytes:
    # The SDK signs str bodies as UTF-8; give it bodies whose latin-1 text is that UTF-8.
    return body.decode("latin-1").encode("utf-8")


@SETTINGS
@given(schemes, paths, queries, bodies, secrets)
def test_sdk_signature_always_verifies(
    scheme: str, path: str, query: str, body: bytes, sk: str
) -> None:
    req = sign(scheme, path, query, body, sk)
    SIGNER.verify(req, SIGNER.parse(req), Credential("AKprop", Secret(sk)), latin(body))


@SETTINGS
@given(schemes, paths, queries, bodies, secrets, st.data())
def test_single_byte_change_fails(
    scheme: str, path: str, query: str, body: bytes, sk: str, data: st.DataObject
) -> None:
    req = sign(scheme, path, query, body, sk)
    raw = latin(body)
    targets = (
        ["body", "path"] + (["query"] if query else []) + (["host"] if scheme == "Qiniu" else [])
    )
    target = data.draw(st.sampled_from(targets))
    if target == "body":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
    else:
        value = getattr(req, target)
        i = data.draw(st.integers(0, len(value) - 1))
        new = "X" if value[i] != "X" else "Y"
        setattr(req, target, value[:i] + new + value[i + 1 :])
    cred = Credential("AKprop", Secret(sk))
    try:
        SIGNER.verify(req, SIGNER.parse(req), cred, raw)
    except SignatureMismatch:
        return
    raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(schemes, paths, queries, bodies, secrets, secrets)
def test_resign_then_verify_round_trip(
    scheme: str, path: str, query: str, body: bytes, sk: str, real_sk: str
) -> None:
    req = sign(scheme, path, query, body, sk)
    auth = SIGNER.parse(req)
    real = Credential("AKreal", Secret(real_sk))
    req.host = "rsf.qbox.me"
    SIGNER.resign(req, auth, real, latin(body), datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "AKreal"
    SIGNER.verify(req, again, real, latin(body))


auth_values = st.one_of(
    st.text(max_size=120),
    st.builds(lambda s, t: f"{s} {t}", st.sampled_from(["QBox", "Qiniu", "qbox"]),
              st.text(max_size=80)),
    st.builds(lambda s, a, g: f"{s} {a}:{g}", st.sampled_from(["QBox", "Qiniu"]),
              st.text(max_size=20), st.text(string.ascii_letters + "-_=+/", max_size=30)),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(auth_values, st.one_of(st.none(), st.text(max_size=20)), st.text(max_size=40))
def test_arbitrary_authorization_is_only_malformed(
    value: str, x_date: str | None, query: str
) -> None:
    headers = CIMultiDict({"Authorization": value})
    if x_date is not None:
        headers["X-Qiniu-Date"] = x_date
    req = SigningRequest("GET", "rs.qiniuapi.com", "/", query, headers)
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), b"")
