"""Baishan's API token: it publishes no SDK; the token is placed as its documentation shows
(``baishan_upstream``), in the query, a JSON body or a form body."""

from __future__ import annotations

import json
import string
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import ParsedAuth, SigningRequest
from tests.signers.baishan_upstream import presented_tokens
from tests.signers.conformance.base import Form, Garbage, Signed, Vector, load

tokens = st.text(string.ascii_letters + string.digits + "-_.~+/=", min_size=1, max_size=64)
others = st.lists(
    st.tuples(
        st.text(string.ascii_letters, min_size=1, max_size=6).filter(lambda n: n != "token"),
        st.text(max_size=10),
    ),
    max_size=4,
)


def build(token: str, params: list[tuple[str, str]], where: str) -> Signed:
    cred = Credential("", Secret(token))
    if where == "query":
        return Signed(
            SigningRequest("GET", "h", "/v2/x", urlencode([*params, ("token", token)])), cred
        )
    if where == "json":
        body, ctype = json.dumps({**dict(params), "token": token}), "application/json"
    else:
        body, ctype = urlencode([("token", token), *params]), "application/x-www-form-urlencoded"
    return Signed(
        SigningRequest(
            "POST", "h", "/v2/x", "", CIMultiDict({"Content-Type": ctype}), body=body.encode()
        ),
        cred,
    )


def _swapped(
    signed: Signed, req: SigningRequest, auth: ParsedAuth, real: Credential, now: datetime
) -> None:
    """The real token stands where the proxy's was, and nowhere else."""
    ctype = req.headers.get("Content-Type", "")
    assert presented_tokens(req.query, req.body or b"", ctype) == [real.secret_key.reveal()]


garbage = st.builds(
    lambda q, b, ct: SigningRequest("POST", "h", "/", q, CIMultiDict({"Content-Type": ct}), body=b),
    st.text(max_size=60),
    st.none() | st.binary(max_size=60),
    st.sampled_from(["", "application/json", "application/x-www-form-urlencoded"]),
)

FORMS = [
    Form(
        "baishan",
        "baishan",
        st.builds(build, tokens, others, st.sampled_from(["query", "json", "form"])),
        reals=st.builds(lambda t: Credential("", Secret(t)), tokens),
        secrets=tokens,
        tampers={},  # the token is the whole signature: another one is test_another_secret_fails
        garbage={"request": Garbage(garbage)},
        on_resigned=_swapped,
        other_key=None,
        examples=100,
    )
]


def _vector(c: dict[str, Any]) -> Vector:
    r = c["request"]
    req = SigningRequest(
        r["method"],
        r["host"],
        r["path"],
        r["query"],
        CIMultiDict(r["headers"]),
        body=r["body"].encode() if r["body"] else None,
    )
    # re-signing swaps in another token: test_baishan.py checks the swap against the page
    return Vector(
        "baishan",
        c["name"],
        req,
        Credential("", Secret(c["credential"]["secret_key"])),
        req.body,
        parsed={"signed_at": None},
        resigned=None,
    )


VECTORS = [_vector(c) for c in load("baishan", "doc.json")]
REPLAY: dict[str, Any] = {}  # a token is no signature: keyed on the request's spelling
