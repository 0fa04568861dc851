"""Property tests: SDK-signed requests (RPC and ACS3) verify, any change breaks them, garbage is
only ever a 400."""

from __future__ import annotations

import contextlib
import hashlib
import string
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

from alibabacloud_tea_openapi.utils import Utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.aliyun import SIGNER
from keybroker.signers.base import SigningRequest
from tests.signers.aliyun_upstream import sdk_acs3_authorization

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORM = "application/x-www-form-urlencoded"
RPC_AUTH = {"AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce",
            "Timestamp", "SecurityToken"}  # fmt: skip

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
# The RPC signers encode names; any name works.  ACS3: the tea SDK does not encode names, the
# documentation does — they agree on the names APIs use, which is what ACS3 tests draw.
rpc_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda n: n not in RPC_AUTH
)
acs3_names = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=8)
secrets = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
tokens = st.text(string.ascii_letters + string.digits + "+/=-_.", min_size=1, max_size=40)
NONCE = "nonce-0123456789"
STAMP = "2024-05-06T07:08:09Z"


def rpc_sign(
    method: str,
    query: dict[str, str],
    body: dict[str, str],
    sk: str,
    token: str | None = None,
) -> tuple[SigningRequest, Credential]:
    """Sign with the tea SDK's RPC signer; credentials in the query, extras in a form body."""
    params = {**query, "AccessKeyId": "LTAIprop", "SignatureMethod": "HMAC-SHA1",
              "SignatureVersion": "1.0", "SignatureNonce": NONCE, "Timestamp": STAMP}  # fmt: skip
    if token:
        params["SecurityToken"] = token
    params["Signature"] = Utils.get_rpcsignature({**params, **body}, method, sk)
    headers = CIMultiDict({"Content-Type": FORM} if body else {})
    raw = urlencode(body).encode() if body else None
    req = SigningRequest(method, "ecs.aliyuncs.com", "/", urlencode(params), headers, body=raw)
    return req, Credential("LTAIprop", Secret(sk), Secret(token) if token else None)


def acs3_sign(
    method: str, query: dict[str, str], body: str, sk: str, token: str | None = None
) -> tuple[SigningRequest, Credential]:
    payload = hashlib.sha256(body.encode()).hexdigest()
    headers = {
        "host": "ecs.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-date": STAMP,
        "x-acs-signature-nonce": NONCE,
        "content-type": "application/json",
        "x-acs-content-sha256": payload,
    }
    if token:
        headers["x-acs-accesskey-id"] = "LTAIprop"
        headers["x-acs-security-token"] = token
    headers["Authorization"] = sdk_acs3_authorization(
        method, "/", query, headers, payload, "LTAIprop", sk
    )
    req = SigningRequest(method, "ecs.aliyuncs.com", "/", urlencode(query),
                         CIMultiDict(headers), body=body.encode())  # fmt: skip
    return req, Credential("LTAIprop", Secret(sk), Secret(token) if token else None)


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE"])
rpc_params = st.dictionaries(rpc_names, text, max_size=5)
acs3_query = st.dictionaries(acs3_names, text, max_size=5)


@SETTINGS
@given(methods, rpc_params, rpc_params, secrets, st.none() | tokens)
def test_rpc_sdk_signature_always_verifies(
    method: str, query: dict[str, str], body: dict[str, str], sk: str, token: str | None
) -> None:
    body = {k: v for k, v in body.items() if k not in query}
    req, cred = rpc_sign(method, query, body, sk, token)
    SIGNER.verify(req, SIGNER.parse(req), cred, req.body)


@SETTINGS
@given(methods, acs3_query, text, secrets, st.none() | tokens)
def test_acs3_sdk_signature_always_verifies(
    method: str, query: dict[str, str], body: str, sk: str, token: str | None
) -> None:
    req, cred = acs3_sign(method, query, body, sk, token)
    SIGNER.verify(req, SIGNER.parse(req), cred, req.body)


def _flip(raw: bytes, data: st.DataObject) -> bytes:
    if not raw:
        return b"x"
    i = data.draw(st.integers(0, len(raw) - 1))
    return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]


@SETTINGS
@given(rpc_params.filter(bool), secrets, st.data())
def test_rpc_single_change_fails(query: dict[str, str], sk: str, data: st.DataObject) -> None:
    req, cred = rpc_sign("GET", query, {}, sk)
    params = dict(parse_qsl(req.query, keep_blank_values=True))
    target = data.draw(st.sampled_from(["value", "name", "method", "nonce", "timestamp"]))
    name = data.draw(st.sampled_from(sorted(query)))
    if target == "value":
        flipped = _flip(query[name].encode(), data).decode("utf-8", "replace")
        params[name] = flipped if flipped != query[name] else flipped + "!"
    elif target == "name":
        params[name + "x"] = params.pop(name)
    elif target == "method":
        req.method = "POST"
    elif target == "nonce":
        params["SignatureNonce"] = "other"
    else:
        params["Timestamp"] = "2024-05-06T07:08:10Z"
    req.query = urlencode(params)
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, SIGNER.parse(req), cred, None)
        raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(acs3_query, text, secrets, st.data())
def test_acs3_single_change_fails(
    query: dict[str, str], body: str, sk: str, data: st.DataObject
) -> None:
    req, cred = acs3_sign("POST", query, body, sk)
    targets = ["body", "content-type", "date", "path"] + (["query"] if query else [])
    target = data.draw(st.sampled_from(targets))
    if target == "body":
        req.body = _flip(req.body or b"", data)
    elif target == "content-type":
        req.headers["content-type"] = "application/jsoN"
    elif target == "date":
        req.headers["x-acs-date"] = "2024-05-06T07:08:10Z"
    elif target == "path":
        req.path = "/x"
    else:
        name = data.draw(st.sampled_from(sorted(query)))
        req.query = urlencode({**query, name: query[name] + "!"})
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, SIGNER.parse(req), cred, req.body)
        raise AssertionError(f"a changed {target} still verified")


@SETTINGS
@given(secrets, secrets)
def test_other_secret_fails(sk: str, other: str) -> None:
    if other == sk:
        return
    for req, _ in (rpc_sign("GET", {"A": "1"}, {}, sk), acs3_sign("GET", {}, "", sk)):
        with contextlib.suppress(SignatureMismatch):
            SIGNER.verify(req, SIGNER.parse(req), Credential("LTAIprop", Secret(other)), req.body)
            raise AssertionError("a different secret verified")


def _parse_only_malformed(req: SigningRequest) -> None:
    try:
        auth = SIGNER.parse(req)
    except MalformedSignature as exc:
        assert exc.status == 400
        return
    with contextlib.suppress(SignatureMismatch):
        SIGNER.verify(req, auth, Credential(auth.access_key, Secret("k")), req.body)
    SIGNER.resign(req.copy(), auth, Credential("AK", Secret("k")), req.body, datetime.now(UTC))


auth_values = st.one_of(
    st.text(max_size=200),
    st.text(max_size=200).map(lambda t: "ACS3-HMAC-SHA256 " + t),
    st.builds(
        lambda c, h, s: f"ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s}",
        st.text(max_size=12),
        st.lists(
            st.sampled_from(["host", "x-acs-date", "x-acs-content-sha256",
                             "x-acs-signature-nonce", "content-type", "X", ""]),
            max_size=6,
        ).map(";".join),
        st.text("0123456789abcdef", min_size=62, max_size=66),
    ),
)  # fmt: skip
header_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["2024-01-01T00:00:00Z", hashlib.sha256(b"").hexdigest(), "n"]),
)


@settings(max_examples=300, deadline=None)
@given(auth_values, header_values, header_values, header_values, st.text(max_size=60))
def test_arbitrary_authorization_is_only_malformed(
    auth: str, date: str, sha: str, nonce: str, query: str
) -> None:
    headers = CIMultiDict(
        {
            "Authorization": auth,
            "x-acs-date": date,
            "x-acs-content-sha256": sha,
            "x-acs-signature-nonce": nonce,
        }
    )
    _parse_only_malformed(SigningRequest("GET", "h", "/", query, headers, body=b""))


rpc_keys = st.sampled_from(
    ["AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce",
     "Timestamp", "SecurityToken", "Action", "RegionId"]
)  # fmt: skip
rpc_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["HMAC-SHA1", "1.0", "2024-01-01T00:00:00Z", "A" * 27 + "=", "LTAIx"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(rpc_keys, rpc_values), max_size=10),
    st.lists(st.tuples(rpc_keys, rpc_values), max_size=6),
    st.sampled_from(["/", "", "/x"]),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_arbitrary_rpc_parameters_are_only_malformed(
    query: list[tuple[str, str]], body: list[tuple[str, str]], path: str, junk: bytes | None
) -> None:
    raw = junk if junk is not None else urlencode(body).encode()
    headers = CIMultiDict({"Content-Type": FORM})
    _parse_only_malformed(SigningRequest("POST", "h", path, urlencode(query), headers, body=raw))


@SETTINGS
@given(rpc_params, rpc_params, secrets, secrets, st.none() | tokens)
def test_rpc_resign_then_verify_round_trip(
    query: dict[str, str], body: dict[str, str], sk: str, real_sk: str, token: str | None
) -> None:
    body = {k: v for k, v in body.items() if k not in query}
    req, _ = rpc_sign("POST", query, body, sk)
    real = Credential("LTAIreal", Secret(real_sk), Secret(token) if token else None)
    SIGNER.resign(req, SIGNER.parse(req), real, req.body, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "LTAIreal"
    assert again.signed_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    SIGNER.verify(req, again, real, req.body)


@SETTINGS
@given(acs3_query, text, secrets, secrets, st.none() | tokens)
def test_acs3_resign_then_verify_round_trip(
    query: dict[str, str], body: str, sk: str, real_sk: str, token: str | None
) -> None:
    req, _ = acs3_sign("POST", query, body, sk)
    real = Credential("LTAIreal", Secret(real_sk), Secret(token) if token else None)
    SIGNER.resign(req, SIGNER.parse(req), real, req.body, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    again = SIGNER.parse(req)
    assert again.access_key == "LTAIreal"
    SIGNER.verify(req, again, real, req.body)
