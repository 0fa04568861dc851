"""Property tests: reference-signed Wangsu dates verify, a change breaks them, garbage is 400."""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.wangsu import SIGNER
from tests.signers.wangsu_upstream import docs_authorization, docs_date

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

users = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
instants = st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC))
algorithms = st.sampled_from(["sha1", "sha256"])
headers = st.sampled_from(["Date", "x-cnc-date"])


def sign(user: str, key: str, when: datetime, algorithm: str, header: str) -> SigningRequest:
    date = docs_date(when)
    auth = docs_authorization(user, key, date, algorithm)
    return SigningRequest("GET", "h", "/", "", CIMultiDict({header: date, "Authorization": auth}))


@SETTINGS
@given(users, secrets, instants, algorithms, headers)
def test_reference_signature_always_verifies(
    user: str, key: str, when: datetime, algorithm: str, header: str
) -> None:
    req = sign(user, key, when, algorithm, header)
    auth = SIGNER.parse(req)
    assert auth.access_key == user
    assert auth.signed_at == when.replace(microsecond=0)
    SIGNER.verify(req, auth, Credential(user, Secret(key)), None)


@SETTINGS
@given(users, secrets, instants, algorithms, st.integers(1, 10**8), st.data())
def test_changed_date_or_password_byte_fails(
    user: str, key: str, when: datetime, algorithm: str, shift: int, data: st.DataObject
) -> None:
    req = sign(user, key, when, algorithm, "Date")
    if data.draw(st.booleans()):
        req.headers["Date"] = docs_date(when + timedelta(seconds=shift))
    else:
        raw = bytearray(base64.b64decode(req.headers["Authorization"][6:]))
        password = bytearray(base64.b64decode(bytes(raw).decode().rpartition(":")[2]))
        i = data.draw(st.integers(0, len(password) - 1))
        password[i] ^= data.draw(st.integers(1, 255))
        text = f"{user}:{base64.b64encode(bytes(password)).decode()}"
        req.headers["Authorization"] = "Basic " + base64.b64encode(text.encode()).decode()
    try:
        SIGNER.verify(req, SIGNER.parse(req), Credential(user, Secret(key)), None)
    except SignatureMismatch:
        return
    raise AssertionError("a changed date or password still verified")


@SETTINGS
@given(users, secrets, secrets, instants, instants, algorithms, headers)
def test_resign_then_verify_round_trip(
    user: str, key: str, real: str, when: datetime, now: datetime, algorithm: str, header: str
) -> None:
    req = sign(user, key, when, algorithm, header)
    cred = Credential("real-user", Secret(real))
    SIGNER.resign(req, SIGNER.parse(req), cred, None, now)
    again = SIGNER.parse(req)
    assert again.access_key == "real-user" and again.signed_at == now.replace(microsecond=0)
    SIGNER.verify(req, again, cred, None)


b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
auth_values = st.one_of(
    st.text(max_size=100),
    st.text(max_size=60).map(lambda t: "Basic " + t),
    st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.builds(lambda u, p: "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode(),
              st.text(max_size=10), b64),
)  # fmt: skip
dates = st.one_of(st.text(max_size=40), instants.map(docs_date))


@settings(max_examples=300, deadline=None)
@given(auth_values, st.one_of(st.none(), dates), st.one_of(st.none(), dates))
def test_arbitrary_headers_are_only_malformed(auth: str, date: str | None, cnc: str | None) -> None:
    h = CIMultiDict({"Authorization": auth})
    if date is not None:
        h["Date"] = date
    if cnc is not None:
        h["x-cnc-date"] = cnc
    req = SigningRequest("GET", "h", "/", "", h)
    SIGNER.detect(req)  # never raises
    try:
        parsed = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, parsed, Credential(parsed.access_key, Secret("k")), None)
