"""Property tests: botocore-signed random requests verify; any change to a signed part fails;
any malformed Authorization or presigned query is a MalformedSignature and nothing else."""

from __future__ import annotations

import contextlib
import datetime as _dt
from urllib.parse import quote

import pytest
from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import SigningRequest
from tests.signers.test_aws_helpers import botocore_clock, credential, from_botocore

PROXY = Credentials("AKIAPROP", "prop/secret")
CRED = credential("AKIAPROP", "prop/secret")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_segment = _text.map(lambda s: quote(s, safe="-_.~!$'()*,;=:@"))
_name = st.from_regex(r"x-[a-z0-9]{1,8}", fullmatch=True)
_value = st.from_regex(r"[ -~]{0,20}", fullmatch=True).filter(lambda v: v.strip())


@st.composite
def requests(draw: st.DrawFn) -> tuple[AWSRequest, str, bytes]:
    service = draw(st.sampled_from(["s3", "kms", "execute-api"]))
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE"]))
    path = "/" + "/".join(draw(st.lists(_segment, max_size=4)))
    params = draw(st.lists(st.tuples(_text, _text), max_size=4))
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params)
    headers = draw(st.dictionaries(_name, _value, max_size=3))
    body = draw(st.binary(max_size=64))
    lo, hi = _dt.datetime(2000, 1, 1), _dt.datetime(2099, 1, 1)
    when = draw(st.datetimes(min_value=lo, max_value=hi))
    url = f"https://h.{service}.amazonaws.com{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, headers=headers, data=body)
    cls = botoauth.S3SigV4Auth if service == "s3" else botoauth.SigV4Auth
    with botocore_clock(when.replace(tzinfo=_dt.UTC)):
        cls(PROXY, service, "eu-west-1").add_auth(req)
    return req, service, body


@SETTINGS
@given(requests())
def test_botocore_signed_requests_verify(case: tuple[AWSRequest, str, bytes]) -> None:
    signed, _, body = case
    req = from_botocore(signed)
    SIGNER.verify(req, SIGNER.parse(req), CRED, body)


def _mutations(req: SigningRequest, body: bytes) -> list[tuple[str, SigningRequest, bytes]]:
    out = []
    m = req.copy()
    m.method = "PATCH" if req.method != "PATCH" else "GET"
    out.append(("method", m, body))
    m = req.copy()
    m.path = req.path + "x"
    out.append(("path", m, body))
    m = req.copy()
    m.query = (req.query + "&" if req.query else "") + "extra=1"
    out.append(("query", m, body))
    m = req.copy()
    m.host = "x" + req.host
    out.append(("host", m, body))
    stamp = req.headers["X-Amz-Date"]
    m = req.copy()
    m.headers["X-Amz-Date"] = stamp[:-2] + str((int(stamp[-2]) + 1) % 10) + "Z"  # still valid
    out.append(("date", m, body))
    for name in [k for k in req.headers if k.lower().startswith("x-") and k != "X-Amz-Date"]:
        m = req.copy()
        m.headers[name] = req.headers[name] + "0"
        out.append((name, m, body))
    out.append(("body", req.copy(), body + b"!"))
    return out


@SETTINGS
@given(requests())
def test_any_change_to_a_signed_part_fails(case: tuple[AWSRequest, str, bytes]) -> None:
    signed, service, body = case
    req = from_botocore(signed)
    for what, changed, new_body in _mutations(req, body):
        try:
            auth = SIGNER.parse(changed)
        except MalformedSignature:
            continue  # e.g. a date that no longer parses: rejected before verification
        if what == "body" and service == "s3":
            # S3 signs the claimed hash; the proxy checks the bytes against it while streaming
            assert auth.payload_sha256 is not None
            continue
        with pytest.raises(SignatureMismatch):
            SIGNER.verify(changed, auth, CRED, new_body)


# -- malformed input ------------------------------------------------------------------------------

STAMP = "20240506T070809Z"
SCOPE = "AKID/20240506/eu-west-1/s3/aws4_request"
SIG = "ab" * 32


def _header(value: str, **headers: str) -> SigningRequest:
    h: CIMultiDict[str] = CIMultiDict({"X-Amz-Date": STAMP, "Authorization": value})
    h.update(headers)
    return SigningRequest("GET", "example.amazonaws.com", "/", "", h)


def _query(**params: str) -> SigningRequest:
    base = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": SCOPE,
        "X-Amz-Date": STAMP,
        "X-Amz-Expires": "60",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": SIG,
    }
    base.update(params)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in base.items() if v != "<drop>")
    return SigningRequest("GET", "example.amazonaws.com", "/", query, CIMultiDict())


def _auth(credential: str = SCOPE, signed: str = "host;x-amz-date", sig: str = SIG) -> str:
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={sig}"


MALFORMED = [
    (_header("AWS4-HMAC-SHA256"), "missing Credential"),
    (_header("AWS4-HMAC-SHA256X Credential=a"), "does not use AWS4-HMAC-SHA256"),
    (_header("Bearer abc"), "does not use AWS4-HMAC-SHA256"),
    (_header(_auth() + ", Foo=bar"), "unknown Authorization component 'Foo'"),
    (_header(_auth() + ", Signature=" + SIG), "repeats Signature"),
    (_header(_auth() + " garbage"), "component without '='"),
    (_header(_auth(sig="xyz")), "Signature must be 64 hexadecimal digits"),
    (_header(_auth(sig="a" * 63)), "Signature must be 64 hexadecimal digits"),
    (_header(_auth(credential="AKID/20240506/eu-west-1/s3")), "Credential must be"),
    (_header(_auth(credential="AKID/20240507/eu-west-1/s3/aws4_request")), "does not match"),
    (_header(_auth(credential="AKID/20240506/eu-west-1!/s3/aws4_request")), "region is not valid"),
    (_header(_auth(credential="AKID/20240506/eu-west-1//aws4_request")), "service is not valid"),
    (_header(_auth(credential="AKID/20240506/eu-west-1/s3/aws5_request")), "must end with"),
    (_header(_auth(credential="/20240506/eu-west-1/s3/aws4_request")), "access key is empty"),
    (_header(_auth(signed="x-amz-date")), "must include host"),
    (_header(_auth(signed="host;;x-amz-date")), "invalid header name"),
    (_header(_auth(signed="host;host")), "lists a header twice"),
    (_header(_auth(signed="host;authorization")), "must not include authorization"),
    (_header(_auth(signed="host;x-n"), **{"X-N": "caf\u00e9"}), "non-ASCII value"),
    (_header(_auth(signed="host;x-n"), **{"X-N": "a\udcff"}), "non-ASCII value"),
    (_header(_auth(), **{"X-Amz-Date": "2024-05-06T07:08:09Z"}), "X-Amz-Date must look like"),
    (_header(_auth(), **{"X-Amz-Date": "20241306T070809Z"}), "not a valid date"),
    (_header(_auth(), **{"x-amz-content-sha256": "abc"}), "x-amz-content-sha256 must be"),
    (_header("AWS4-HMAC-SHA256 " + "x" * 9000), "too long"),
    (_query(**{"X-Amz-Expires": "604801"}), "between 1 and 604800"),
    (_query(**{"X-Amz-Expires": "1e3"}), "whole number"),
    (_query(**{"X-Amz-Expires": "-5"}), "whole number"),
    (_query(**{"X-Amz-Expires": "\u0661\u0662"}), "whole number"),
    (_query(**{"X-Amz-Algorithm": "AWS4-HMAC-SHA512"}), "X-Amz-Algorithm must be"),
    (_query(**{"X-Amz-Signature": "<drop>"}), "missing X-Amz-Signature"),
    (_query(**{"X-Amz-Date": "yesterday"}), "X-Amz-Date must look like"),
    (_query(**{"X-Amz-SignedHeaders": "content-type"}), "must include host"),
]


@pytest.mark.parametrize(("req", "message"), MALFORMED)
def test_malformed_input_has_a_precise_message(req: SigningRequest, message: str) -> None:
    with pytest.raises(MalformedSignature, match=message) as err:
        SIGNER.parse(req)
    assert SIG not in str(err.value)


def test_repeated_query_auth_parameter_is_malformed() -> None:
    req = _query()
    req.query += "&X-Amz-Date=" + STAMP
    with pytest.raises(MalformedSignature, match="repeats X-Amz-Date"):
        SIGNER.parse(req)


def test_invalid_utf8_in_the_query_is_malformed() -> None:
    req = _header(_auth())
    req.query = "a=%ff"
    with pytest.raises(MalformedSignature, match="not valid UTF-8"):
        SIGNER.parse(req)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_authorization_value_is_parsed_or_malformed(value: str) -> None:
    for candidate in (value, "AWS4-HMAC-SHA256 " + value):
        try:
            SIGNER.parse(_header(candidate))
        except MalformedSignature as err:
            assert SIG not in str(err)


_fragment = st.sampled_from(
    ["Credential=", "SignedHeaders=", "Signature=", SCOPE, SIG, "host", ";", ",", " ", "/", "="]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_fragment, st.text(max_size=5)), max_size=12))
def test_near_miss_authorization_values_are_parsed_or_malformed(parts: list[str]) -> None:
    with contextlib.suppress(MalformedSignature):
        SIGNER.parse(_header("AWS4-HMAC-SHA256 " + "".join(parts)))


_param = st.sampled_from(
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_param, st.text(max_size=40)), st.text(max_size=40))
def test_any_presigned_query_is_parsed_or_malformed(params: dict[str, str], raw: str) -> None:
    req = _query(**params)
    req.query += "&" + raw
    try:
        SIGNER.parse(req)
    except MalformedSignature as err:
        assert SIG not in str(err)
