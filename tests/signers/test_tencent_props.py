"""Property tests: SDK-signed requests verify, any change breaks them, garbage is a 400."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.tencent import SIGNER
from tests.signers.tencent_upstream import sdk_client, sdk_signed

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.", min_size=1, max_size=8)
params = st.dictionaries(names, text, max_size=5)
secrets = st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF),
                  min_size=1, max_size=30).filter(lambda s: s.strip() == s)  # fmt: skip
schemes = st.sampled_from(["TC3-HMAC-SHA256", "HmacSHA1", "HmacSHA256"])
methods = st.sampled_from(["GET", "POST"])


def sign(scheme: str, method: str, p: dict[str, Any], sk: str) -> tuple[SigningRequest, Credential]:
    host = "cvm.tencentcloudapi.com"
    client = sdk_client(host, "AKIDprop", sk, method=method, sign_method=scheme)
    return sdk_signed(client, "DescribeThings", p, 1717171717), Credential("AKIDprop", Secret(sk))


@SETTINGS
@given(schemes, methods, params, secrets)
def test_sdk_signature_always_verifies(
    scheme: str, method: str, p: dict[str, Any], sk: str
) -> None:
    req, cred = sign(scheme, method, p, sk)
    assert SIGNER.detect(req)
    SIGNER.verify(req, SIGNER.parse(req), cred, req.body)


@SETTINGS
@given(schemes, methods, params, secrets, st.data())
def test_single_byte_change_fails(
    scheme: str, method: str, p: dict[str, Any], sk: str, data: st.DataObject
) -> None:
    req, cred = sign(scheme, method, {**p, "Fixed": "v"}, sk)
    wire = bytearray((req.query or (req.body or b"").decode()).encode())
    auth = SIGNER.parse(req)
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] = data.draw(st.sampled_from([c for c in b"aZ09" if c != wire[i]]))
    if parse_qsl(bytes(wire).decode("utf-8", "replace")) == parse_qsl(
        req.query or (req.body or b"").decode()
    ):
        return  # another spelling of the same parameters (e.g. %A0 -> %a0)
    changed = req.copy()
    if req.query:
        changed.query = wire.decode("utf-8", "replace")
    else:
        changed.body = bytes(wire)
    try:
        again = SIGNER.parse(changed)
    except MalformedSignature:
        return  # the change broke the syntax: refused before any verification
    if scheme == "TC3-HMAC-SHA256":
        again = auth
    try:
        SIGNER.verify(changed, again, cred, changed.body)
    except SignatureMismatch:
        return
    raise AssertionError(f"a changed byte at {i} still verified")


@SETTINGS
@given(schemes, secrets, secrets)
def test_other_secret_fails(scheme: str, sk: str, other: str) -> None:
    req, _ = sign(scheme, "POST", {"A": "1"}, sk)
    if other == sk:
        return
    try:
        SIGNER.verify(req, SIGNER.parse(req), Credential("AKIDprop", Secret(other)), req.body)
    except SignatureMismatch:
        return
    raise AssertionError("a different secret verified")


@SETTINGS
@given(schemes, methods, params, secrets, secrets)
def test_resign_then_verify_round_trip(
    scheme: str, method: str, p: dict[str, Any], sk: str, real_sk: str
) -> None:
    req, _ = sign(scheme, method, p, sk)
    auth = SIGNER.parse(req)
    real = Credential("AKIDreal", Secret(real_sk), Secret("tok"))
    SIGNER.resign(req, auth, real, req.body, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "AKIDreal"
    assert again.signed_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    SIGNER.verify(req, again, real, req.body)


def _only_malformed(req: SigningRequest) -> None:
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), req.body)


header_names = st.sampled_from(["host", "content-type", "x-tc-action", "X", ""])
auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "TC3-HMAC-SHA256 " + t),
    st.builds(
        lambda c, h, s: f"TC3-HMAC-SHA256 Credential={c}, SignedHeaders={h}, Signature={s}",
        st.lists(st.text(max_size=12), min_size=1, max_size=5).map("/".join),
        st.lists(header_names, max_size=4).map(";".join),
        st.text("0123456789abcdef", min_size=62, max_size=66),
    ),
)


@settings(max_examples=300, deadline=None)
@given(auth_values, st.text(max_size=14), st.text(max_size=40), st.binary(max_size=40))
def test_arbitrary_authorization_is_only_malformed(
    auth: str, ts: str, query: str, body: bytes
) -> None:
    headers = CIMultiDict(
        {"Authorization": auth, "X-TC-Timestamp": ts, "Content-Type": "application/json"}
    )
    _only_malformed(SigningRequest("GET", "h", "/", query, headers, body=body))


v1_keys = st.sampled_from(
    ["SecretId", "Nonce", "Timestamp", "Signature", "SignatureMethod", "Token", "Action", "a_b"]
)
v1_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["HmacSHA1", "HmacSHA256", "1465185768", "11886",
                     "EliP9YW3pW28FpsEdkXt/+WcGeI=", "A" * 43 + "="]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(v1_keys, v1_values), max_size=10), st.booleans())
def test_arbitrary_v1_params_are_only_malformed(
    pairs: list[tuple[str, str]], in_body: bool
) -> None:
    encoded = urlencode(pairs)
    if in_body:
        form = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
        req = SigningRequest("POST", "h", "/", "", form, body=encoded.encode())
    else:
        req = SigningRequest("GET", "h", "/", encoded)
    SIGNER.detect(req)
    _only_malformed(req)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_undecodable_form_bodies_are_only_malformed(body: bytes) -> None:
    form = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded"})
    req = SigningRequest("POST", "h", "/", "", form, body=b"Signature=x&" + body)
    SIGNER.detect(req)
    _only_malformed(req)
