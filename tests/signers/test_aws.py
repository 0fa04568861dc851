"""AWS SigV4 signer: known-answer vectors, parsing, re-signing and endpoint rules."""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

import boto3
import pytest
from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from keybroker import signers
from keybroker.errors import MalformedSignature, SignatureMismatch
from keybroker.proxy.checks import replay_key
from keybroker.signers import base
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import BodyPolicy, ParsedAuth, Signer, SigningRequest
from keybroker.signers.sigv4 import keys as sigv4_keys
from keybroker.signers.sigv4.parse import EMPTY_SHA256, SigV4State
from tests.signers.test_aws_helpers import credential, generator, load, vector_request

SUITE = load("suite.json")
S3_DOCS = load("s3_docs.json")
BOTOCORE = load("botocore.json")


# -- known answers ------------------------------------------------------------------------------


def test_botocore_vectors_are_what_botocore_produces_today() -> None:
    assert generator().build()["cases"] == BOTOCORE["cases"]


def test_vector_sources_are_recorded() -> None:
    assert "signature-v4-test-suite" in SUITE["source"]
    assert all(c["source"].startswith("https://docs.aws.amazon.com/") for c in S3_DOCS["cases"])
    assert BOTOCORE["source"].startswith("botocore ")


def test_signing_key_matches_the_documented_derivation() -> None:
    """AWS's documented kSigning example (secret wJalr..., 20120215, us-east-1, iam)."""
    key = sigv4_keys.signing_key(
        credential("a", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").secret_key,
        "20120215",
        "us-east-1",
        "iam",
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


# -- parse ----------------------------------------------------------------------------------------

NOW = _dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=_dt.UTC)
STAMP = "20240506T070809Z"
SIG = "a" * 64


def _req(
    auth: str | None = None, *, query: str = "", path: str = "/", **headers: str
) -> SigningRequest:
    h: CIMultiDict[str] = CIMultiDict({"X-Amz-Date": STAMP})
    if auth is not None:
        h["Authorization"] = auth
    for k, v in headers.items():
        h[k.replace("_", "-")] = v
    return SigningRequest("GET", "example.amazonaws.com", path, query, h)


def _authz(service: str = "s3", signed: str = "host;x-amz-date", sig: str = SIG) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=AKID/20240506/eu-west-1/{service}/aws4_request, "
        f"SignedHeaders={signed}, Signature={sig}"
    )


def test_parse_header_auth() -> None:
    auth = SIGNER.parse(_req(_authz()))
    assert (auth.access_key, auth.region, auth.service, auth.in_query) == (
        "AKID",
        "eu-west-1",
        "s3",
        False,
    )
    assert auth.signed_at == NOW
    assert auth.signed_at.tzinfo is not None
    assert auth.body is BodyPolicy.BUFFER
    assert auth.expires is None


@pytest.mark.parametrize(
    ("claim", "policy", "sha"),
    [
        (EMPTY_SHA256.upper(), BodyPolicy.CLAIMED_SHA256, EMPTY_SHA256),
        ("UNSIGNED-PAYLOAD", BodyPolicy.UNSIGNED, None),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", BodyPolicy.STREAMING, None),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", BodyPolicy.STREAMING, None),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", BodyPolicy.STREAMING, None),
    ],
)  # fmt: skip
def test_parse_body_policy(claim: str, policy: BodyPolicy, sha: str | None) -> None:
    extra = {"x_amz_decoded_content_length": "5"}  # chunked uploads must say their length
    if claim.endswith("-TRAILER"):
        extra["x_amz_trailer"] = "x-amz-checksum-crc32"
    auth = SIGNER.parse(_req(_authz(), x_amz_content_sha256=claim, **extra))
    assert auth.body is policy
    assert auth.payload_sha256 == sha


def test_presigned_s3_is_unsigned_payload_and_other_services_hash_the_body() -> None:
    s3 = SIGNER.parse(vector_request(S3_DOCS["cases"][-1]))
    assert (s3.in_query, s3.body, s3.expires) == (True, BodyPolicy.UNSIGNED, 86400)
    sts = SIGNER.parse(vector_request(SUITE["cases"][-1]))
    assert (sts.in_query, sts.body, sts.expires) == (True, BodyPolicy.BUFFER, 3600)


_SCOPE = "Credential=AKID/20240506/eu-west-1/s3/aws4_request"
_SH = "SignedHeaders=host;x-amz-date"


@pytest.mark.parametrize(
    "value",
    [
        f"AWS4-HMAC-SHA256 {_SCOPE},{_SH},Signature={SIG}",
        f"AWS4-HMAC-SHA256 {_SCOPE} {_SH} Signature={SIG}",
        f"  AWS4-HMAC-SHA256   {_SCOPE} ,\t{_SH} , Signature={SIG} ",
        f"AWS4-HMAC-SHA256 Signature={SIG}, {_SCOPE}, SignedHeaders=HOST;X-Amz-Date",
    ],
)
def test_authorization_whitespace_and_commas_are_lenient(value: str) -> None:
    auth = SIGNER.parse(_req(value))
    assert auth.access_key == "AKID"
    assert isinstance(auth.state, SigV4State)
    assert auth.state.signed_headers == ("host", "x-amz-date")


def test_access_key_with_slash_and_date_header_fallback() -> None:
    req = _req(_authz().replace("AKID/", "team/AKID/"))
    del req.headers["X-Amz-Date"]
    req.headers["Date"] = "Mon, 06 May 2024 07:08:09 GMT"
    auth = SIGNER.parse(req)
    assert auth.access_key == "team/AKID"
    assert auth.signed_at == NOW


@pytest.mark.parametrize(
    ("service", "headers", "query", "action"),
    [
        ("kms", {"X-Amz-Target": "TrentService.Encrypt"}, "", "Encrypt"),
        ("iam", {}, "Action=ListUsers&Version=2010-05-08", "ListUsers"),
        ("s3", {}, "list-type=2", "ListObjectsV2"),
        # a header or parameter the service does not read is no action
        ("s3", {"X-Amz-Target": "S3.GetObject"}, "Action=GetObject", "ListObjects"),
        ("iam", {"X-Amz-Target": "TrentService.Encrypt"}, "", None),
        ("kms", {}, "Action=ListKeys", None),
    ],
)
def test_operation(service: str, headers: dict[str, str], query: str, action: str | None) -> None:
    req = _req(
        _authz(service),
        path="/bucket",
        query=query,
        **{k.replace("-", "_"): v for k, v in headers.items()},
    )
    auth = SIGNER.parse(req)
    assert auth.action is None  # SigV4's parse reads no action: operation() does
    assert SIGNER.operation(req, auth, b"").action == action


def test_detect() -> None:
    assert SIGNER.detect(_req(_authz()))
    assert SIGNER.detect(vector_request(S3_DOCS["cases"][-1]))
    assert not SIGNER.detect(_req("HMAC-SHA256 Credential=x"))
    # SigV4a is recognised only to be refused by name (MalformedSignature saying "SigV4a")
    sigv4a = _req(None, query="X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256")
    assert SIGNER.detect(sigv4a)
    with pytest.raises(MalformedSignature, match="SigV4a"):
        SIGNER.parse(sigv4a)
    assert not SIGNER.detect(_req(None))


def test_registry_and_protocol() -> None:
    assert isinstance(SIGNER, Signer)
    assert signers.get("aws") is SIGNER
    assert SIGNER.public_domains == (".amazonaws.com", ".amazonaws.com.cn")


def test_signature_is_never_shown() -> None:
    auth = SIGNER.parse(_req(_authz(sig="0123456789abcdef" * 4)))
    assert "0123456789abcdef" not in repr(auth)


# -- verify ---------------------------------------------------------------------------------------


def _signed(req: SigningRequest, cred: Any, body: bytes = b"") -> tuple[SigningRequest, ParsedAuth]:
    """Sign ``req`` (which carries a header or query auth template) with ``cred``."""
    auth = SIGNER.parse(req)
    assert auth.signed_at is not None
    SIGNER.resign(req, auth, cred, body, auth.signed_at)
    return req, SIGNER.parse(req)


PROXY = credential("AKID", "proxy-secret")


def test_verify_rejects_another_access_key_and_a_missing_signed_header() -> None:
    req, auth = _signed(_req(_authz(signed="host;x-amz-date;x-extra"), x_extra="1"), PROXY)
    SIGNER.verify(req, auth, PROXY, b"")
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, credential("OTHER", "proxy-secret"), b"")
    del req.headers["X-Extra"]
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, b"")


def test_verify_checks_the_proxy_session_token() -> None:
    with_token = credential("AKID", "proxy-secret", "proxy-token")
    req, auth = _signed(_req(_authz()), with_token)
    SIGNER.verify(req, auth, with_token, b"")
    req.headers["X-Amz-Security-Token"] = "another-token"
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, with_token, b"")


def test_verify_hashes_a_buffered_body() -> None:
    req, auth = _signed(_req(_authz("kms")), PROXY, b"payload")
    assert auth.body is BodyPolicy.BUFFER
    SIGNER.verify(req, auth, PROXY, b"payload")
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, b"payloaD")


def test_a_buffered_body_is_hashed_once_for_verify_and_resign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verify and re-sign get the same body object: its SHA-256 is computed once; another
    body object (even an equal one) is hashed anew, so a ParsedAuth never vouches for a body
    it did not see."""
    hashed: list[int] = []

    class Counting:
        @staticmethod
        def sha256(data: bytes = b"") -> Any:
            hashed.append(len(data))
            return hashlib.sha256(data)

    body = b"p" * 100_000
    req, auth = _signed(_req(_authz("kms")), PROXY, body)
    monkeypatch.setattr(base, "hashlib", Counting)
    SIGNER.verify(req, auth, PROXY, body)
    SIGNER.resign(req.copy(), auth, REAL, body, LATER)
    assert hashed == [len(body)]
    SIGNER.verify(req, auth, PROXY, bytes(bytearray(body)))  # equal, another object
    assert hashed == [len(body)] * 2
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(req, auth, PROXY, body[:-1] + b"P")


def test_s3_path_is_not_normalised_but_others_are() -> None:
    s3, auth = _signed(_req(_authz("s3"), path="/b/./k//x"), PROXY)
    s3.path = "/b/k/x"
    with pytest.raises(SignatureMismatch):
        SIGNER.verify(s3, auth, PROXY, b"")
    other, auth = _signed(_req(_authz("execute-api"), path="/b/./k//x"), PROXY)
    other.path = "/b/k/x"
    SIGNER.verify(other, auth, PROXY, b"")


# -- resign ---------------------------------------------------------------------------------------

REAL = credential("REALAK", "real-secret", "real-token")
LATER = _dt.datetime(2024, 5, 6, 8, 0, 0, tzinfo=_dt.UTC)


def test_resign_header_swaps_key_date_token_and_host() -> None:
    req, auth = _signed(_req(_authz("sts")), credential("AKID", "proxy-secret", "proxy-token"))
    up = req.copy()
    up.host = "sts.eu-west-1.amazonaws.com"
    SIGNER.resign(up, auth, REAL, b"", LATER)
    assert up.headers["X-Amz-Date"] == "20240506T080000Z"
    assert up.headers["X-Amz-Security-Token"] == "real-token"
    assert "Credential=REALAK/20240506/eu-west-1/sts/aws4_request" in up.headers["Authorization"]
    again = SIGNER.parse(up)
    SIGNER.verify(up, again, REAL, b"")


def test_resign_removes_the_proxy_token_when_the_real_credential_has_none() -> None:
    req, auth = _signed(_req(_authz()), credential("AKID", "proxy-secret", "proxy-token"))
    assert "x-amz-security-token" in req.headers["Authorization"]
    plain = credential("REALAK", "real-secret")
    SIGNER.resign(req, auth, plain, b"", LATER)
    assert "X-Amz-Security-Token" not in req.headers
    assert "x-amz-security-token" not in req.headers["Authorization"]
    SIGNER.verify(req, SIGNER.parse(req), plain, b"")


def test_resign_presigned_keeps_expiry_and_sets_token() -> None:
    case = S3_DOCS["cases"][-1]
    req = vector_request(case)
    auth = SIGNER.parse(req)
    SIGNER.resign(req, auth, REAL, None, LATER)
    pairs = dict(req.query_pairs())
    assert pairs["X-Amz-Credential"] == "REALAK/20240506/us-east-1/s3/aws4_request"
    assert (pairs["X-Amz-Expires"], pairs["X-Amz-Security-Token"]) == ("86400", "real-token")
    assert req.query.endswith("&X-Amz-Signature=" + pairs["X-Amz-Signature"])
    SIGNER.verify(req, SIGNER.parse(req), REAL, None)


def test_resign_needs_an_aware_time() -> None:
    req = _req(_authz())
    with pytest.raises(ValueError, match="timezone-aware"):
        SIGNER.resign(req, SIGNER.parse(req), REAL, None, LATER.replace(tzinfo=None))


def test_resign_reencodes_a_query_that_is_not_canonical() -> None:
    req, auth = _signed(_req(_authz("s3"), query="prefix=a/b+c&x=%7e"), PROXY)
    SIGNER.resign(req, auth, REAL, b"", LATER)
    assert req.query == "prefix=a%2Fb%2Bc&x=~"
    SIGNER.verify(req, SIGNER.parse(req), REAL, b"")


def test_signing_keys_are_cached_by_fingerprint_and_bounded() -> None:
    for i in range(sigv4_keys.KEY_CACHE_SIZE + 10):
        sigv4_keys.signing_key(REAL.secret_key, f"2024{i:04d}", "r", "s")
    assert len(sigv4_keys.KEY_CACHE) == sigv4_keys.KEY_CACHE_SIZE
    secret = REAL.secret_key.reveal().encode()
    for key in sigv4_keys.KEY_CACHE:
        assert secret not in repr(key).encode()
        assert hashlib.sha256(secret).digest() not in key


# -- native upstream ------------------------------------------------------------------------------


def _upstream(
    service: str, region: str, host: str = "127.0.0.1:8080", path: str = "/"
) -> str | None:
    auth = ParsedAuth("AKID", region=region, service=service)
    return SIGNER.native_upstream(SigningRequest("GET", host, path, ""), auth)


BOTO_CLIENTS = [
    "s3", "sts", "iam", "route53", "cloudfront", "ec2", "kms", "sqs", "dynamodb", "lambda",
    "ses", "cloudwatch", "logs", "organizations", "pinpoint", "sso", "sso-oidc", "apigateway",
    "ecr", "iot-data", "shield", "budgets", "ce", "waf", "health",
]  # fmt: skip


@pytest.fixture(scope="module")
def boto() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"])
@pytest.mark.parametrize("client", BOTO_CLIENTS)
def test_native_upstream_matches_botocore_endpoints(
    boto: boto3.session.Session, client: str, region: str
) -> None:
    meta = boto.client(client, region_name=region).meta
    assert _upstream(meta.service_model.signing_name, region) == meta.endpoint_url


def test_native_upstream_special_cases() -> None:
    assert _upstream("s3", "eu-west-1", "photos.s3.eu-west-1.amazonaws.com") == (
        "https://photos.s3.eu-west-1.amazonaws.com"
    )
    assert _upstream("s3", "us-east-1", "my.bucket.s3.amazonaws.com:443") == (
        "https://my.bucket.s3.amazonaws.com"
    )
    # a bucket named like an S3 label is still the bucket (the classifier reads it the same)
    assert _upstream("s3", "us-east-1", "s3logs.s3.amazonaws.com") == (
        "https://s3logs.s3.amazonaws.com"
    )
    assert _upstream("s3", "eu-west-1", "a.s3.b.s3.dualstack.eu-west-1.amazonaws.com") == (
        "https://a.s3.b.s3.eu-west-1.amazonaws.com"
    )
    assert _upstream(
        "s3", "eu-west-1", "ap-123456789012.s3-accesspoint.eu-west-1.amazonaws.com"
    ) == ("https://ap-123456789012.s3-accesspoint.eu-west-1.amazonaws.com")
    # not an S3 endpoint name: path style
    assert (
        _upstream("s3", "eu-west-1", "photos.s3.example.com")
        == "https://s3.eu-west-1.amazonaws.com"
    )
    assert _upstream("s3", "us-west-2", path="/v20180820/jobs") == (
        "https://s3-control.us-west-2.amazonaws.com"
    )
    # under a bucket's own host that path is a key of the bucket
    assert _upstream("s3", "us-west-2", "b.s3.us-west-2.amazonaws.com", "/v20180820/jobs") == (
        "https://b.s3.us-west-2.amazonaws.com"
    )
    assert _upstream("iam", "us-gov-west-1") == "https://iam.us-gov.amazonaws.com"
    assert _upstream("execute-api", "eu-west-3") == "https://execute-api.eu-west-3.amazonaws.com"
    assert _upstream("s3", "not a region") is None
    assert SIGNER.native_upstream(SigningRequest("GET", "h", "/", ""), ParsedAuth("a")) is None


def test_an_unsigned_body_does_not_change_the_replay_key() -> None:
    """An ``UNSIGNED-PAYLOAD`` upload's body is not in its signature, so not in its key."""

    class Unsigned(botoauth.S3SigV4Auth):
        def _should_sha256_sign_payload(self, request: AWSRequest) -> bool:
            return False

    host = "bkt.s3.us-east-1.amazonaws.com"
    req = AWSRequest(method="PUT", url=f"https://{host}/k", data=b"a")
    Unsigned(Credentials("AKIDREPLAYPROP", "sk-prop-1"), "s3", "us-east-1").add_auth(req)
    headers = CIMultiDict({k: v for k, v in req.headers.items()})
    sreq = SigningRequest("PUT", host, "/k", "", headers)
    auth = SIGNER.parse(sreq)
    keys_ = {replay_key(SIGNER, "aws", sreq, auth, body) for body in (None, b"a", b"b" * 99)}
    assert len(keys_) == 1
    assert hashlib.sha256(b"a").hexdigest() not in repr(auth)
