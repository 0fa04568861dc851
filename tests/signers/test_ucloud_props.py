"""Property tests: SDK-signed UCloud parameters verify, any change breaks them, garbage is a 400."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from ucloud.core.auth import Credential as SdkCredential
from ucloud.core.typesystem import encoder

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.ucloud import SIGNER

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: n not in ("PublicKey", "Signature")
)
params = st.dictionaries(names, text, min_size=1, max_size=6)
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
wheres = st.sampled_from(["query", "form", "json"])


def signed(p: dict[str, str], sk: str) -> dict[str, str]:
    flat: dict[str, str] = encoder.encode(dict(p))
    flat["Signature"] = SdkCredential("pk", sk).verify_ac(flat)
    return flat


def render(flat: dict[str, str], where: str) -> SigningRequest:
    if where == "query":
        return SigningRequest("GET", "api.ucloud.cn", "/", urlencode(flat))
    ctype = "application/json" if where == "json" else "application/x-www-form-urlencoded"
    body = json.dumps(flat) if where == "json" else urlencode(flat)
    return SigningRequest("POST", "api.ucloud.cn", "/", "", CIMultiDict({"Content-Type": ctype}),
                          body=body.encode())  # fmt: skip


def sign(p: dict[str, str], sk: str, where: str) -> SigningRequest:
    return render(signed(p, sk), where)


@SETTINGS
@given(params, secrets, wheres)
def test_sdk_signature_always_verifies(p: dict[str, str], sk: str, where: str) -> None:
    req = sign(p, sk, where)
    SIGNER.verify(req, SIGNER.parse(req), Credential("pk", Secret(sk)), req.body)


@SETTINGS
@given(params, secrets, wheres, st.data())
def test_single_change_fails(p: dict[str, str], sk: str, where: str, data: st.DataObject) -> None:
    forged = signed(p, sk)
    name = data.draw(st.sampled_from(sorted(p)))
    forged[name] += data.draw(st.sampled_from(["!", "0", "ü", " "]))
    req = render(forged, where)
    try:
        SIGNER.verify(req, SIGNER.parse(req), Credential("pk", Secret(sk)), req.body)
    except SignatureMismatch:
        return
    raise AssertionError("a changed parameter still verified")


@SETTINGS
@given(params, secrets, secrets, wheres)
def test_resign_then_verify_round_trip(p: dict[str, str], sk: str, real: str, where: str) -> None:
    req = sign(p, sk, where)
    cred = Credential("real-pk", Secret(real))
    SIGNER.resign(req, SIGNER.parse(req), cred, req.body, datetime(2025, 1, 1, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "real-pk"
    SIGNER.verify(req, again, cred, req.body)


def _only_malformed(req: SigningRequest) -> None:
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), req.body)


keys = st.sampled_from(["PublicKey", "Signature", "Action", "Region", "A.0", ""])
values = st.one_of(st.text(max_size=20), st.just("a" * 40), st.just("pk"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=8), st.text(max_size=40))
def test_arbitrary_query_is_only_malformed(pairs: list[tuple[str, str]], junk: str) -> None:
    _only_malformed(SigningRequest("GET", "h", "/", urlencode(pairs) + junk))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.binary(max_size=80), st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
        max_leaves=12).map(lambda d: json.dumps(d).encode())),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "", "text/plain"]),
)  # fmt: skip
def test_arbitrary_body_is_only_malformed(body: bytes, ctype: str) -> None:
    req = SigningRequest("POST", "h", "/", "", CIMultiDict({"Content-Type": ctype}), body=body)
    _only_malformed(req)
