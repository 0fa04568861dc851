"""The proxy forwards through a :class:`keybroker.http.transport.Transport`: with an in-memory
one, a request signed by an unmodified SDK is verified, re-signed and answered without any
upstream socket — and what would have gone upstream can be checked byte for byte."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config as BotoConfig
from multidict import CIMultiDict

from keybroker.errors import SignatureMismatch
from keybroker.settings import Config
from keybroker.signers import get
from keybroker.signers.base import SigningRequest
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import ProxyThread
from tests.proxy.memory_transport import MemoryAnswer, MemoryTransport, Sent
from tests.proxy.platform import kept_list, send, sign_aws

UPSTREAM = "https://s3.us-east-1.amazonaws.com"


def _answer(sent: Sent) -> MemoryAnswer:
    if sent.method == "PUT":
        return MemoryAnswer(200, headers=CIMultiDict({"ETag": '"abc"'}))
    body = b"hello from memory" * 3
    headers = CIMultiDict({"Content-Type": "application/octet-stream"})
    headers["Content-Length"] = str(len(body))
    return MemoryAnswer(200, body, headers)


@pytest.fixture(scope="module")
def seam() -> Iterator[tuple[object, MemoryTransport, tuple[str, str, str, str]]]:
    keys = ("AKIDPROXY" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
    real = ("AKIAREAL" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
    logscan.register(keys[1], real[1])
    transport = MemoryTransport(_answer)
    config = Config(endpoints=[aws_endpoint("mem", *keys, *real, UPSTREAM)])
    thread = ProxyThread(config)
    thread.proxy = type(thread.proxy)(config, transport=transport)
    url = thread.start()
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        config=BotoConfig(
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        ),
    )
    try:
        yield client, transport, (*keys, *real)
    finally:
        thread.stop()


def test_a_put_goes_through_the_transport_re_signed_with_the_real_key(seam) -> None:  # type: ignore[no-untyped-def]
    client, transport, (proxy_ak, proxy_sk, real_ak, real_sk) = seam
    before = len(transport.sent)
    client.put_object(Bucket="bkt", Key="a/b.txt", Body=b"payload bytes")
    sent = transport.sent[before]
    assert (sent.method, sent.scheme, sent.host) == ("PUT", "https", "s3.us-east-1.amazonaws.com")
    assert sent.target == "/bkt/a/b.txt"
    assert sent.body == b"payload bytes"
    authorization = sent.headers["Authorization"]
    assert f"Credential={real_ak}/" in authorization and proxy_ak not in authorization
    # what went "upstream" verifies with the real secret, not with the proxy's
    signer = get("aws")
    req = SigningRequest("PUT", sent.host, "/bkt/a/b.txt", "", CIMultiDict(sent.headers))
    auth = signer.parse(req)
    signer.verify(req, auth, _cred(real_ak, real_sk), sent.body)
    with pytest.raises(SignatureMismatch):
        signer.verify(req, signer.parse(req), _cred(real_ak, proxy_sk), sent.body)


def test_the_answer_streams_back_from_the_transport(seam) -> None:  # type: ignore[no-untyped-def]
    client, transport, _keys = seam
    got = client.get_object(Bucket="bkt", Key="a/b.txt")["Body"].read()
    assert got == b"hello from memory" * 3
    assert transport.sent[-1].method == "GET"


def test_a_bad_proxy_signature_never_reaches_the_transport(seam) -> None:  # type: ignore[no-untyped-def]
    client, transport, (proxy_ak, _sk, _rak, _rsk) = seam
    before = len(transport.sent)
    bad = boto3.client(
        "s3",
        endpoint_url=client.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=proxy_ak,
        aws_secret_access_key="not-the-proxy-secret-at-all-0123456789",
        config=BotoConfig(
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        ),
    )
    with pytest.raises(Exception, match="signature does not match"):
        bad.delete_object(Bucket="bkt", Key="a/b.txt")
    assert len(transport.sent) == before


@pytest.mark.parametrize("kept", ["signed", "signed less control"])
def test_keyproxy_signature_over_control_headers_never_reaches_the_transport(  # type: ignore[no-untyped-def]
    seam, kept: str
) -> None:
    """A platform whose signature covers its X-Mcdn headers (curl < 8.17 signs every -H
    header) is refused as key-proxy refuses it: key-proxy deletes its control headers before
    it verifies, kept or not, so what is verified is what is forwarded, without them."""
    client, transport, (proxy_ak, proxy_sk, _real_ak, _real_sk) = seam
    uri = f"{UPSTREAM}/bkt/control"
    control = {"X-Mcdn-Origin-Uri": uri, "X-Mcdn-Cloud-Account-Name": "mem"}
    signed = sign_aws("GET", uri, ak=proxy_ak, sk=proxy_sk, service="s3", headers=control)
    assert ";x-mcdn-origin-uri," in signed["Authorization"]
    names = kept_list(signed)
    if kept != "signed":
        names = kept_list({k: v for k, v in signed.items() if k not in control})
    before = len(transport.sent)
    r = send(client.meta.endpoint_url, "GET", uri, signed, account="mem", kept=names)
    assert r.status == 401, r.body
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.ValidateCredentialErr"
    assert len(transport.sent) == before
    # signed without them, the same request goes through
    signed = sign_aws("GET", uri, ak=proxy_ak, sk=proxy_sk, service="s3")
    r = send(client.meta.endpoint_url, "GET", uri, signed, account="mem")
    assert r.status == 200, r.body
    assert transport.sent[-1].target == "/bkt/control"
    assert not any(h.lower().startswith("x-mcdn-") for h in transport.sent[-1].headers)


def _cred(access_key: str, secret: str):  # type: ignore[no-untyped-def]
    from keybroker.credentials import Credential
    from keybroker.secret import Secret

    return Credential(access_key, Secret(secret))
