"""The sample request of every vendor (what ``keybroker try`` sends): signed with a credential,
it verifies with that credential under the scheme's own parser and verifier, in key-proxy form
(the vendor's host) and native form (the proxy's address); another secret fails; and where a
vendor-algorithm upstream exists in tests/signers, it accepts the request signed with its key.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.errors import SignatureMismatch
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest
from keybroker.signers.samples import Sample, known_samples, sample_for, signed_sample
from tests.signers.akamai_upstream import akamai_upstream
from tests.signers.aliyun_upstream import aliyun_upstream
from tests.signers.baidu_upstream import baidu_upstream
from tests.signers.baishan_upstream import baishan_upstream
from tests.signers.huawei_upstream import huawei_upstream
from tests.signers.jingdong_upstream import jingdong_upstream
from tests.signers.ksyun_upstream import ksyun_upstream
from tests.signers.qiniu_upstream import qiniu_upstream
from tests.signers.tencent_upstream import tencent_upstream
from tests.signers.ucloud_upstream import ucloud_upstream
from tests.signers.volc_upstream import volc_upstream
from tests.signers.wangsu_upstream import wangsu_upstream

VENDORS = list(signers.BUILTIN_VENDORS)


def cred(tag: str, secret: str) -> Credential:
    """A credential with every field any scheme needs (Akamai's three, a session token)."""
    return Credential(
        f"AKID{tag}SAMPLEKEY01",
        Secret(f"{secret}-secret-key-0123456789abcdef"),
        Secret(f"akab-access-token-{tag}"),
        Secret(f"akab-client-token-{tag}"),
        Secret(f"{secret}-client-secret-0123456789abcdef"),
    )


KEY = cred("proxy", "one")
SAME_ID_OTHER_SECRET = cred("proxy", "two")


def real(vendor: str, secret: str = "real") -> Credential:
    """The key an upstream verifier checks with; a session token only where the scheme's
    credential needs one (Akamai's access token): the verifiers are built without one."""
    return Credential(
        "AKIDrealSAMPLEKEY01",
        Secret(f"{secret}-secret-key-0123456789abcdef"),
        Secret("akab-access-token-real") if vendor == "akamai" else None,
        Secret("akab-client-token-real"),
        Secret(f"{secret}-client-secret-0123456789abcdef"),
    )


Upstream = Callable[[Credential], AbstractContextManager[str]]

#: a server that checks signatures with the vendor's own algorithm or SDK, by vendor
UPSTREAMS: dict[str, Upstream] = {
    "volcengine": lambda c: volc_upstream(c.access_key, c.secret_key.reveal()),
    "ksyun": lambda c: ksyun_upstream(c.access_key, c.secret_key.reveal()),
    "aliyun": lambda c: aliyun_upstream(c.access_key, c.secret_key.reveal()),
    "tencent": lambda c: tencent_upstream(c.access_key, c.secret_key.reveal()),
    "huawei": lambda c: huawei_upstream(c.access_key, c.secret_key.reveal()),
    "baidu": lambda c: baidu_upstream(c.access_key, c.secret_key.reveal()),
    "jingdong": lambda c: jingdong_upstream(c.access_key, c.secret_key.reveal()),
    "akamai": lambda c: akamai_upstream(
        _reveal(c.client_token), _reveal(c.access_token), _reveal(c.client_secret)
    ),
    "qiniu": lambda c: qiniu_upstream(c.access_key, c.secret_key.reveal()),
    "ucloud": lambda c: ucloud_upstream(c.access_key, c.secret_key.reveal()),
    "wangsu": lambda c: wangsu_upstream(c.access_key, c.secret_key.reveal()),
    "baishan": lambda c: baishan_upstream(c.secret_key.reveal()),
}


def _reveal(secret: Secret | None) -> str:
    assert secret is not None
    return secret.reveal()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def body_of(sample: Sample, req: SigningRequest) -> bytes:
    return req.body if req.body is not None else sample.body


def check(vendor: str, sample: Sample, req: SigningRequest, key: Credential) -> None:
    """What the proxy does with the request as it arrives: parse it afresh (it names the
    credential it was signed with), verify it with ``key``."""
    signer = signers.get(vendor)
    arrived = req.copy()
    auth = signer.parse(arrived)
    assert auth.access_key == signer.credential_id(KEY)
    signer.verify(arrived, auth, key, body_of(sample, req))


def test_every_builtin_vendor_has_a_sample() -> None:
    assert known_samples() == sorted(VENDORS)


def test_unknown_vendor_is_a_key_error_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="have: akamai, aliyun, aws"):
        sample_for("nosuch", "AK", now())


@pytest.mark.parametrize("vendor", VENDORS)
def test_sample_verifies_with_its_credential(vendor: str) -> None:
    sample, req = signed_sample(vendor, KEY, now())
    assert req.host == sample.host and req.scheme == "https"
    check(vendor, sample, req, KEY)


@pytest.mark.parametrize("vendor", VENDORS)
def test_sample_fails_with_another_secret(vendor: str) -> None:
    sample, req = signed_sample(vendor, KEY, now())
    with pytest.raises(SignatureMismatch):
        check(vendor, sample, req, SAME_ID_OTHER_SECRET)


@pytest.mark.parametrize("vendor", VENDORS)
def test_native_form_verifies(vendor: str) -> None:
    sample, req = signed_sample(vendor, KEY, now(), host="127.0.0.1:3888", scheme="http")
    assert (req.host, req.scheme) == ("127.0.0.1:3888", "http")
    check(vendor, sample, req, KEY)


@pytest.mark.parametrize("vendor", VENDORS)
def test_sample_is_a_harmless_read(vendor: str) -> None:
    sample = sample_for(vendor, "AKIDSAMPLE", now())
    assert sample.method in ("GET", "POST")
    assert sample.description
    signer = signers.get(vendor)
    operation = getattr(signer, "operation", None)
    if operation is not None:
        _, req = signed_sample(vendor, KEY, now())
        op = operation(req, signer.parse(req.copy()), body_of(sample, req))
        assert op.read_only, op


def send(url: str, sample: Sample, req: SigningRequest) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(urlsplit(url).netloc, timeout=10)
    try:
        headers = {k: v for k, v in req.headers.items() if k.lower() != "host"}
        target = req.path + (f"?{req.query}" if req.query else "")
        conn.request(req.method, target, body=body_of(sample, req), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def accepted(status: int, doc: Any) -> bool:
    """200 without an error (Tencent answers its errors with 200)."""
    if status != 200:
        return False
    return not (isinstance(doc, dict) and "Error" in (doc.get("Response") or {}))


@pytest.fixture(params=sorted(UPSTREAMS))
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    vendor: str = request.param
    with UPSTREAMS[vendor](real(vendor)) as url:
        yield vendor, url


def test_vendor_verifier_accepts_the_sample(upstream: tuple[str, str]) -> None:
    """Signed for the upstream's address with its key, the vendor's algorithm accepts it;
    signed with another secret, it refuses it."""
    vendor, url = upstream
    host = urlsplit(url).netloc
    sample, req = signed_sample(vendor, real(vendor), now(), host=host, scheme="http")
    status, doc = send(url, sample, req)
    assert accepted(status, doc), (status, doc)

    other = real(vendor, "not-the-real")
    sample, req = signed_sample(vendor, other, now(), host=host, scheme="http")
    status, doc = send(url, sample, req)
    assert not accepted(status, doc), (status, doc)
