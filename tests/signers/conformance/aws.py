"""AWS Signature Version 4: signed by botocore; the AWS test suite, the S3 documentation's
examples and botocore's own signatures as vectors (``tests/vectors/aws/``)."""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any, ClassVar
from unittest import mock
from urllib.parse import quote, urlencode

from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import strategies as st
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.aws import SIGNER, AwsSigner
from keybroker.signers.base import SigningRequest
from keybroker.signers.sigv4.parse import SigV4State
from tests.signers.conformance import respell
from tests.signers.conformance.base import Form, Garbage, Signed, Vector, changed, method_swap
from tests.signers.conformance.respell import Maker, ReplayCase
from tests.signers.test_aws_helpers import (
    botocore_clock,
    credential,
    from_botocore,
    load,
    vector_request,
)

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_segment = _text.map(lambda s: quote(s, safe="-_.~!$'()*,;=:@"))
_name = st.from_regex(r"x-[a-z0-9]{1,8}", fullmatch=True)
_value = st.from_regex(r"[ -~]{0,20}", fullmatch=True).filter(lambda v: v.strip())
secrets = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+", min_size=1, max_size=40
)


@st.composite
def signed(draw: st.DrawFn) -> Signed:
    """A botocore-signed request: any service's rules (S3's unnormalised path and claimed
    payload hash, or the others' hashed body), at any time."""
    service = draw(st.sampled_from(["s3", "kms", "execute-api"]))
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE"]))
    path = "/" + "/".join(draw(st.lists(_segment, max_size=4)))
    params = draw(st.lists(st.tuples(_text, _text), max_size=4))
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params)
    headers = draw(st.dictionaries(_name, _value, max_size=3))
    body = draw(st.binary(max_size=64))
    lo, hi = _dt.datetime(2000, 1, 1), _dt.datetime(2099, 1, 1)
    when = draw(st.datetimes(min_value=lo, max_value=hi))
    sk = draw(secrets)
    url = f"https://h.{service}.amazonaws.com{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, headers=headers, data=body)
    cls = botoauth.S3SigV4Auth if service == "s3" else botoauth.SigV4Auth
    with botocore_clock(when.replace(tzinfo=_dt.UTC)):
        cls(Credentials("AKIAPROP", sk), service, "eu-west-1").add_auth(req)
    return Signed(from_botocore(req), credential("AKIAPROP", sk), body)


def _query(signed: Signed, data: st.DataObject) -> list[Signed]:
    return changed(signed, query=(signed.req.query + "&" if signed.req.query else "") + "extra=1")


def _date(signed: Signed, data: st.DataObject) -> list[Signed]:
    stamp = signed.req.headers["X-Amz-Date"]
    out = signed.copy()
    out.req.headers["X-Amz-Date"] = stamp[:-2] + str((int(stamp[-2]) + 1) % 10) + "Z"  # valid
    return [out]


def _x_headers(signed: Signed, data: st.DataObject) -> list[Signed]:
    """Each signed ``x-`` header changed, one at a time."""
    out = []
    for name in [k for k in signed.req.headers if k.lower().startswith("x-") and k != "X-Amz-Date"]:
        one = signed.copy()
        one.req.headers[name] = signed.req.headers[name] + "0"
        out.append(one)
    return out


def _body(signed: Signed, data: st.DataObject) -> list[Signed]:
    return [signed.copy(body=(signed.body or b"") + b"!")]


def _payload_claimed(signed: Signed, auth: Any) -> None:
    """S3 signs the body's claimed hash (the proxy checks the bytes while streaming); the
    other services hash the body into the signature."""
    if ".s3." in signed.req.host:
        assert auth.payload_sha256 == hashlib.sha256(signed.body or b"").hexdigest()


# -- malformed input ------------------------------------------------------------------------------

STAMP = "20240506T070809Z"
SCOPE = "AKID/20240506/eu-west-1/s3/aws4_request"
SIG = "ab" * 32


def header_request(value: str, **headers: str) -> SigningRequest:
    h: CIMultiDict[str] = CIMultiDict({"X-Amz-Date": STAMP, "Authorization": value})
    h.update(headers)
    return SigningRequest("GET", "example.amazonaws.com", "/", "", h)


def query_request(**params: str) -> SigningRequest:
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


_fragment = st.sampled_from(
    ["Credential=", "SignedHeaders=", "Signature=", SCOPE, SIG, "host", ";", ",", " ", "/", "="]
)
_param = st.sampled_from(
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"]
)


def _presigned(params: dict[str, str], raw: str) -> SigningRequest:
    req = query_request(**params)
    req.query += "&" + raw
    return req


GARBAGE = {
    # any value, bare and after the algorithm name
    "authorization": Garbage(
        st.text(max_size=300).flatmap(
            lambda v: st.sampled_from([header_request(v), header_request("AWS4-HMAC-SHA256 " + v)])
        ),
        examples=600,
        never_shown=SIG,
    ),
    "near-miss-authorization": Garbage(
        st.lists(st.one_of(_fragment, st.text(max_size=5)), max_size=12).map(
            lambda parts: header_request("AWS4-HMAC-SHA256 " + "".join(parts))
        ),
        never_shown=SIG,
    ),
    "presigned-query": Garbage(
        st.builds(_presigned, st.dictionaries(_param, st.text(max_size=40)), st.text(max_size=40)),
        never_shown=SIG,
    ),
}

FORMS = [
    Form(
        "aws",
        "aws",
        signed(),
        reals=st.builds(lambda sk, t: credential("AKIAREAL", sk, t), secrets, st.none() | secrets),
        secrets=secrets,
        tampers={
            "method": method_swap,
            "path": lambda s, d: changed(s, path=s.req.path + "x"),
            "query": _query,
            "host": lambda s, d: changed(s, host="x" + s.req.host),
            "date": _date,
            "x-headers": _x_headers,
            "body": _body,
        },
        garbage=GARBAGE,
        also_detected_by=frozenset({"ksyun"}),  # one wire format: the account decides
        on_verified=_payload_claimed,
        # a date or a claimed hash that no longer parses: refused before verifying
        refusable=frozenset({"date", "x-headers"}),
    )
]


class RawPathSigner(AwsSigner):
    """The suite's "unnormalized" cases use service ``service`` with S3's path rule."""

    raw_path_services: ClassVar[frozenset[str]] = frozenset({"service"})


def _signature(signer: AwsSigner) -> Any:
    def read(out: SigningRequest) -> str:
        state = signer.parse(out).state
        assert isinstance(state, SigV4State)
        return state.signature

    return read


def _vectors(data: dict[str, Any]) -> list[Vector]:
    out = []
    for case in data["cases"]:
        c = data["credential"]
        signer = RawPathSigner() if case.get("raw_path") else SIGNER
        out.append(
            Vector(
                "aws",
                case["name"],
                vector_request(case),
                credential(c["access_key"], c["secret_key"], case.get("token")),
                case["body"].encode(),
                parsed={},
                resigned=_signature(signer),
                expected=case["signature"],
                signer=signer,
                wrong=credential(c["access_key"], "not-the-secret", case.get("token")),
            )
        )
    return out


VECTORS = [
    v for name in ("suite.json", "s3_docs.json", "botocore.json") for v in _vectors(load(name))
]


def replay_maker(service: str, presigned: bool = False, vendor: str = "aws") -> Maker:
    def make(query: dict[str, str], sk: str, when: _dt.datetime) -> ReplayCase:
        host = f"{service}.us-east-1.amazonaws.com"
        url = f"https://{host}/obj?{urlencode(query)}"
        body = None if presigned else b"data"
        method = "GET" if presigned else "PUT" if service == "s3" else "POST"
        req = AWSRequest(method=method, url=url, data=body)
        creds = Credentials("AKIDREPLAYPROP", sk)
        if presigned:
            auth: botoauth.SigV4Auth = botoauth.S3SigV4QueryAuth(
                creds, service, "us-east-1", expires=3600
            )
        else:
            cls = botoauth.S3SigV4Auth if service == "s3" else botoauth.SigV4Auth
            auth = cls(creds, service, "us-east-1")
        # the SDK's own clock, set to ``when``
        with mock.patch("botocore.auth.get_current_datetime", lambda: when.replace(tzinfo=None)):
            auth.add_auth(req)
        prepared = req.prepare()
        path, _, qs = prepared.url.split(host, 1)[1].partition("?")
        headers = CIMultiDict({k: v for k, v in prepared.headers.items() if k != "Content-Length"})
        sreq = SigningRequest(req.method, host, path, qs, headers)
        return ReplayCase(vendor, sreq, Credential("AKIDREPLAYPROP", Secret(sk)), body)

    return make


_HEADER = [respell.auth_fields, respell.hex_case, *respell.QUERY]
REPLAY = {
    "aws": (replay_maker("s3"), _HEADER),
    "aws-presigned": (replay_maker("s3", presigned=True), [respell.hex_case, *respell.QUERY]),
    "aws-sts": (replay_maker("sts"), _HEADER),
}
