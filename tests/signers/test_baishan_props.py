"""Property tests: any token verifies only against itself, swaps land where the token was,
garbage is a 400."""

from __future__ import annotations

import contextlib
import json
import string
from datetime import UTC, datetime
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.baishan import SIGNER
from keybroker.signers.base import SigningRequest
from tests.signers.baishan_upstream import presented_tokens

SETTINGS = settings(max_examples=100, deadline=None)

tokens = st.text(string.ascii_letters + string.digits + "-_.~+/=", min_size=1, max_size=64)
others = st.lists(
    st.tuples(st.text(string.ascii_letters, min_size=1, max_size=6).filter(lambda n: n != "token"),
              st.text(max_size=10)), max_size=4)  # fmt: skip
wheres = st.sampled_from(["query", "json", "form"])


def build(token: str, params: list[tuple[str, str]], where: str) -> SigningRequest:
    if where == "query":
        return SigningRequest("GET", "h", "/v2/x", urlencode([*params, ("token", token)]))
    if where == "json":
        body, ctype = json.dumps({**dict(params), "token": token}), "application/json"
    else:
        body, ctype = urlencode([("token", token), *params]), "application/x-www-form-urlencoded"
    return SigningRequest("POST", "h", "/v2/x", "", CIMultiDict({"Content-Type": ctype}),
                          body=body.encode())  # fmt: skip


@SETTINGS
@given(tokens, tokens, others, wheres)
def test_verify_only_with_the_same_token(
    token: str, other: str, params: list[tuple[str, str]], where: str
) -> None:
    req = build(token, params, where)
    auth = SIGNER.parse(req)
    SIGNER.verify(req, auth, Credential("", Secret(token)), req.body)
    if other != token:
        try:
            SIGNER.verify(req, auth, Credential("", Secret(other)), req.body)
        except SignatureMismatch:
            return
        raise AssertionError("another token verified")


@SETTINGS
@given(tokens, tokens, others, wheres)
def test_swap_puts_real_token_in_place(
    token: str, real: str, params: list[tuple[str, str]], where: str
) -> None:
    req = build(token, params, where)
    SIGNER.resign(req, SIGNER.parse(req), Credential("", Secret(real)), req.body,
                  datetime(2025, 1, 1, tzinfo=UTC))  # fmt: skip
    ctype = req.headers.get("Content-Type", "")
    assert presented_tokens(req.query, req.body or b"", ctype) == [real]
    SIGNER.verify(req, SIGNER.parse(req), Credential("", Secret(real)), req.body)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=60),
    st.one_of(st.none(), st.binary(max_size=60)),
    st.sampled_from(["", "application/json", "application/x-www-form-urlencoded"]),
)
def test_arbitrary_requests_are_only_malformed(query: str, body: bytes | None, ctype: str) -> None:
    req = SigningRequest("POST", "h", "/", query, CIMultiDict({"Content-Type": ctype}), body=body)
    SIGNER.detect(req)  # never raises
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential("", Secret("k")), body)
