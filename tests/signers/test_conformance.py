"""The signer conformance suite: the same checks for every vendor's signer, each vendor's facts
(how its SDK signs, what is signed, its vectors) in ``tests/signers/conformance/``.

* known answers: every vector verifies with its credential and parses to what it pins, fails
  with another secret, and re-signing it at its instant reproduces the published signature;
* round trips: an SDK-signed request verifies with its credential and not with another
  secret; any signed part changed fails with ``SignatureMismatch``; re-signed with the real
  credential it verifies with the real credential and not with the proxy's;
* garbage: arbitrary Authorization values and parameters raise ``MalformedSignature`` (400)
  or ``SignatureMismatch`` (401), never another exception;
* the replay key: every accepted respelling of a request has its key, another signature
  another key (see :mod:`tests.signers.conformance.respell`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, ProxyError, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import BodyPolicy, ParsedAuth, Signer, SigningRequest
from tests.signers.conformance import FORMS, GARBAGE, REPLAY, VECTORS
from tests.signers.conformance.base import NOW, Form, Garbage, Signed, Vector, credential_id
from tests.signers.conformance.respell import ALL, WHEN, key_of, params, secret_keys

SLOW = [HealthCheck.too_slow, HealthCheck.filter_too_much]


def _forms() -> list[object]:
    return [pytest.param(f, id=f.name) for f in FORMS]


def _mismatch(
    signer: Signer, req: SigningRequest, cred: Credential, body: bytes | None, what: str
) -> str:
    """``req`` parses and fails to verify with ``cred``, with the one opaque 401; returns what
    the refusal and the parsed signature show (message and reprs)."""
    auth = signer.parse(req)
    try:
        signer.verify(req, auth, cred, body)
    except SignatureMismatch as exc:
        assert type(exc) is SignatureMismatch and exc.status == 401
        _answered_natively(signer, req, auth.service, exc)
        return str(exc) + repr(exc) + repr(auth) + repr(signer)
    raise AssertionError(f"{what} still verified")


def _signature_never_shown(shown: str, signature: bytes) -> None:
    """The signature, in hex or Base64, is not in ``shown``."""
    if signature:
        for spelling in (signature.hex(), base64.b64encode(signature).decode().rstrip("=")):
            assert spelling not in shown


def _answered_natively(
    signer: Signer, req: SigningRequest, service: str | None, exc: ProxyError
) -> None:
    """The refusal, in the vendor's own error shape where it has one (raises nothing)."""
    headers = {k.lower(): v for k, v in req.headers.items()}
    answer = signer.native_error(service, headers, exc.code, str(exc), "req-conformance")
    assert answer is None or (answer.content_type and answer.body)


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("v", [pytest.param(v, id=f"{v.vendor}-{v.name}") for v in VECTORS])
def test_vector_verifies(v: Vector) -> None:
    signer = v.the_signer
    assert signer.detect(v.req)
    auth = signer.parse(v.req)
    assert auth.access_key == credential_id(signer, v.cred)
    for name, value in v.parsed.items():
        assert getattr(auth, name) == value, name
    signer.verify(v.req, auth, v.cred, v.body)


@pytest.mark.parametrize("v", [pytest.param(v, id=f"{v.vendor}-{v.name}") for v in VECTORS])
def test_vector_fails_with_another_secret(v: Vector) -> None:
    _mismatch(v.the_signer, v.req, v.wrong_cred, v.body, "another secret")


@pytest.mark.parametrize(
    "v", [pytest.param(v, id=f"{v.vendor}-{v.name}") for v in VECTORS if v.resigned]
)
def test_vector_resign_reproduces_the_signature(v: Vector) -> None:
    """The same credential at the same instant signs the same bytes as the SDK or the page."""
    assert v.resigned is not None
    signer = v.the_signer
    auth = signer.parse(v.req)
    signer.verify(v.req, auth, v.cred, v.body)  # as the proxy does: what verified is re-signed
    now = v.now or auth.signed_at
    assert now is not None
    out = v.req.copy()
    signer.resign(out, auth, v.cred, v.body, now)
    assert v.resigned(out) == v.expected


@pytest.mark.parametrize("vendor", sorted(s.vendor for s in signers.all_signers()))
def test_is_a_registered_signer(vendor: str) -> None:
    signer = signers.get(vendor)
    assert isinstance(signer, Signer) and signer.vendor == vendor
    assert signer.public_domains
    assert all(d.startswith(".") and d == d.lower() for d in signer.public_domains)


def test_every_vendor_has_vectors_and_forms() -> None:
    vendors = {s.vendor for s in signers.all_signers()}
    assert {v.vendor for v in VECTORS} == vendors
    assert {f.vendor for f in FORMS} == vendors
    assert len(vendors) == 13


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("form", _forms())
def test_sdk_signed_request_verifies(form: Form) -> None:
    @settings(max_examples=form.examples, deadline=None, suppress_health_check=SLOW)
    @given(form.signed)
    def check(s: Signed) -> None:
        signer = form.signer
        if form.detected:
            assert signer.detect(s.req)
        claimed = {o.vendor for o in signers.all_signers() if o.detect(s.req)} - {form.vendor}
        assert claimed <= form.also_detected_by, f"{claimed} claim a {form.name} request"
        auth = signer.parse(s.req)
        assert auth.access_key == credential_id(signer, s.cred)
        signer.verify(s.req, auth, s.cred, s.payload)
        form.on_verified(s, auth)

    check()


@pytest.mark.parametrize("form", _forms())
def test_another_secret_fails(form: Form) -> None:
    @settings(max_examples=form.examples, deadline=None, suppress_health_check=SLOW)
    @given(form.signed, form.secrets)
    def check(s: Signed, other: str) -> None:
        if other == _secret(s.cred):
            return
        signer = form.signer
        shown = _mismatch(signer, s.req, form.with_secret(s.cred, other), s.payload, "a secret")
        _signature_never_shown(shown, signer.parse(s.req).signature)
        # nothing in the refusal depends on the secret tried
        again = other + "\x00another"
        if again == _secret(s.cred):
            return
        assert _mismatch(signer, s.req, form.with_secret(s.cred, again), s.payload, "") == shown

    check()


@pytest.mark.parametrize("form", [pytest.param(f, id=f.name) for f in FORMS if f.other_key])
def test_another_access_key_fails_even_with_the_right_secret(form: Form) -> None:
    assert form.other_key is not None

    @settings(max_examples=form.examples, deadline=None, suppress_health_check=SLOW)
    @given(form.signed)
    def check(s: Signed) -> None:
        assert form.other_key is not None
        _mismatch(form.signer, s.req, form.other_key(s.cred), s.payload, "another access key")

    check()


def _secret(cred: Credential) -> str:
    return (cred.client_secret or cred.secret_key).reveal()


@pytest.mark.parametrize("form", _forms())
def test_every_signed_part_changed_fails(form: Form) -> None:
    @settings(max_examples=form.examples, deadline=None, suppress_health_check=SLOW)
    @given(form.signed, st.data())
    def check(s: Signed, data: st.DataObject) -> None:
        for what, tamper in form.tampers.items():
            for t in tamper(s, data):
                try:
                    auth = form.signer.parse(t.req)
                except MalformedSignature:
                    assert what in form.refusable, f"a changed {what} was refused as malformed"
                    continue
                if what == "body" and auth.body is not BodyPolicy.BUFFER:
                    _body_not_accepted(auth, t.payload)
                    continue
                _mismatch(form.signer, t.req, t.cred, t.payload, f"a changed {what}")

    check()


def _body_not_accepted(auth: ParsedAuth, body: bytes | None) -> None:
    """A body the signature does not cover whole: unsigned (nothing to check), or claimed by
    its SHA-256, which the proxy checks while streaming — the changed body must not match."""
    if auth.body is BodyPolicy.CLAIMED_SHA256:
        assert auth.payload_sha256 != hashlib.sha256(body or b"").hexdigest()
    else:
        assert auth.body is BodyPolicy.UNSIGNED


@pytest.mark.parametrize("form", _forms())
def test_resigned_verifies_with_the_real_key_only(form: Form) -> None:
    @settings(max_examples=form.examples, deadline=None, suppress_health_check=SLOW)
    @given(form.signed, form.reals, form.nows)
    def check(s: Signed, real: Credential, now: datetime) -> None:
        signer = form.signer
        auth = signer.parse(s.req)
        signer.verify(s.req, auth, s.cred, s.payload)
        out = s.req.copy()
        if form.upstream_host:
            out.host = form.upstream_host
        signer.resign(out, auth, real, s.payload, now)
        body = out.body if out.body is not None else s.body
        again = signer.parse(out)
        assert again.access_key == credential_id(signer, real)
        signer.verify(out, again, real, body)
        form.on_resigned(s, out, again, real, now)
        if _secret(real) != _secret(s.cred):
            _mismatch(signer, out, s.cred, body, "the proxy credential")
            _mismatch(signer, out, form.with_secret(real, _secret(s.cred)), body, "the proxy key")

    check()


# --------------------------------------------------------------------------- garbage


def _only_malformed(form: Form, g: Garbage, req: SigningRequest) -> None:
    signer = form.signer
    signer.detect(req)  # never raises
    try:
        auth = signer.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        assert not g.never_shown or g.never_shown not in str(exc)
        _answered_natively(signer, req, None, exc)
        return
    cred = Credential(
        auth.access_key,
        Secret("k"),
        access_token=Secret("a"),
        client_token=Secret("c"),
        client_secret=Secret("k"),
    )
    with contextlib.suppress(SignatureMismatch):
        signer.verify(req, auth, cred, req.body if req.body is not None else b"")
    if g.resign:
        signer.resign(req.copy(), auth, Credential("AK", Secret("k")), req.body, NOW)


@pytest.mark.parametrize(
    ("form", "name"), [pytest.param(f, n, id=f"{f.name}-{n}") for f, n in GARBAGE]
)
def test_garbage_is_only_malformed(form: Form, name: str) -> None:
    g = form.garbage[name]

    @settings(max_examples=g.examples, deadline=None, suppress_health_check=SLOW)
    @given(g.requests)
    def check(req: SigningRequest) -> None:
        _only_malformed(form, g, req)

    check()


# --------------------------------------------------------------------------- replay key

REPLAY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=SLOW)


@pytest.mark.parametrize("name", sorted(REPLAY))
@REPLAY_SETTINGS
@given(query=params, sk=secret_keys, data=st.data())
def test_every_accepted_spelling_has_the_same_replaykey_of(
    name: str, query: dict[str, str], sk: str, data: st.DataObject
) -> None:
    make, accepted = REPLAY[name]
    case = make(query, sk, WHEN)
    canonical = key_of(case, case.req)
    assert canonical is not None, "the SDK's own request must verify"
    req = case.req
    for respell in data.draw(st.lists(st.sampled_from(accepted), max_size=4)) if accepted else []:
        req = respell(req, data)
    assert key_of(case, req) == canonical
    # any respelling at all: refused, or the same key
    for respell in data.draw(st.lists(st.sampled_from(ALL), min_size=1, max_size=4)):
        req = respell(req, data)
        assert key_of(case, req) in (None, canonical)


@pytest.mark.parametrize("name", sorted(REPLAY))
@REPLAY_SETTINGS
@given(query=params, sk=secret_keys, other=secret_keys, seconds=st.integers(1, 600))
def test_another_signature_has_another_replaykey_of(
    name: str, query: dict[str, str], sk: str, other: str, seconds: int
) -> None:
    make, _ = REPLAY[name]
    base = make(query, sk, WHEN)
    key = key_of(base, base.req)
    others = [make({**query, "zz": "1"}, sk, WHEN)]
    if sk != other:
        others.append(make(query, other, WHEN))
    if name not in ("volcengine", "akamai"):  # their SDKs sign at their own now
        others.append(make(query, sk, WHEN + timedelta(seconds=seconds)))
    for case in others:
        assert key_of(case, case.req) not in (None, key)
