"""Property tests: edgegrid-python-signed requests verify, any single change breaks them,
and arbitrary Authorization values raise nothing but MalformedSignature."""

from __future__ import annotations

import contextlib
import string
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from akamai.edgegrid import EdgeGridAuth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.akamai import SIGNER
from keybroker.signers.base import SigningRequest

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOST = "akab-prop.luna.akamaiapis.net"

tokens = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=30)
secrets = st.text(string.ascii_letters + string.digits + "+/=", min_size=1, max_size=44)
segments = st.lists(
    st.text(string.ascii_letters + string.digits + "-_.~%20", max_size=8), max_size=4
).map(lambda s: "/" + "/".join(s))
queries = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=6), st.text(max_size=8), max_size=4
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])


def sign(
    method: str, path: str, query: dict[str, str], body: bytes, ct: str, at: str, cs: str
) -> tuple[SigningRequest, Credential]:
    auth = EdgeGridAuth(client_token=ct, client_secret=cs, access_token=at)
    prepared = requests.Request(
        method, f"https://{HOST}{path}", params=query, data=body, auth=auth
    ).prepare()
    parts = urlsplit(prepared.url)
    req = SigningRequest(method, HOST, parts.path, parts.query, CIMultiDict(prepared.headers))
    cred = Credential(
        "", Secret(""), access_token=Secret(at), client_token=Secret(ct), client_secret=Secret(cs)
    )
    return req, cred


@SETTINGS
@given(methods, segments, queries, st.binary(max_size=64), tokens, tokens, secrets)
def test_sdk_signature_always_verifies(
    method: str, path: str, query: dict[str, str], body: bytes, ct: str, at: str, cs: str
) -> None:
    req, cred = sign(method, path, query, body, ct, at, cs)
    auth = SIGNER.parse(req)
    assert auth.access_key == ct
    SIGNER.verify(req, auth, cred, body)


@SETTINGS
@given(segments, queries, st.binary(min_size=1, max_size=64), tokens, secrets, st.data())
def test_single_change_fails(
    path: str, query: dict[str, str], body: bytes, ct: str, cs: str, data: st.DataObject
) -> None:
    req, cred = sign("POST", path, query, body, ct, "akab-at", cs)
    auth = SIGNER.parse(req)
    target = data.draw(st.sampled_from(["body", "path", "query", "host", "secret"]))
    if target == "body":
        i = data.draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    elif target == "path":
        req.path += "x"
    elif target == "query":
        req.query += "&z=1" if req.query else "z=1"
    elif target == "host":
        req.host = "akab-prox.luna.akamaiapis.net"
    else:
        cred = Credential(
            "",
            Secret(""),
            access_token=cred.access_token,
            client_token=cred.client_token,
            client_secret=Secret(cs + "x"),
        )
    try:
        SIGNER.verify(req, auth, cred, body)
    except SignatureMismatch:
        return
    raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(tokens, tokens, secrets, secrets)
def test_resign_then_verify_round_trip(ct: str, at: str, cs: str, real_cs: str) -> None:
    req, _ = sign("POST", "/x", {"a": "b"}, b"{}", "akab-proxy", "akab-proxy-at", cs)
    auth = SIGNER.parse(req)
    real = Credential(
        "",
        Secret(""),
        access_token=Secret(at),
        client_token=Secret(ct),
        client_secret=Secret(real_cs),
    )
    SIGNER.resign(req, auth, real, b"{}", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == ct
    SIGNER.verify(req, again, real, b"{}")


def _only_malformed(req: SigningRequest) -> None:
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    cred = Credential(
        "",
        Secret(""),
        access_token=Secret("a"),
        client_token=Secret("c"),
        client_secret=Secret("k"),
    )
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, cred, b"")


field_names = st.sampled_from(
    ["client_token", "access_token", "timestamp", "nonce", "signature", "x", ""]
)
field_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["20240101T00:00:00+0000", "A" * 43 + "=", "akab-1", ""]),
)
auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "EG1-HMAC-SHA256 " + t),
    st.lists(st.tuples(field_names, field_values), max_size=7).map(
        lambda kv: "EG1-HMAC-SHA256 " + ";".join(f"{k}={v}" for k, v in kv)
    ),
)


@settings(max_examples=400, deadline=None)
@given(auth_values, st.text(max_size=40), methods)
def test_arbitrary_authorization_is_only_malformed(auth: str, query: str, method: str) -> None:
    _only_malformed(SigningRequest(method, HOST, "/", query, CIMultiDict({"Authorization": auth})))
