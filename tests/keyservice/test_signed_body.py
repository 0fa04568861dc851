"""Key-service requests are signed whole: every unsigned or streaming payload marker is refused
on every route, before the body is read, and a captured signed request cannot carry another
body.  botocore's SigV4Auth signs exactly what a platform would send."""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.keyservice.helpers import PREFIX, KeyBroker, error_code

MARKERS = (
    "UNSIGNED-PAYLOAD",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)
#: (method, path, body) for every key-service route
ROUTES: tuple[tuple[str, str, dict[str, object] | None], ...] = (
    ("GET", "dek/tenant-a/signed?size=32", None),
    ("POST", "dek/tenant-a/signed?size=32", None),
    ("DELETE", "dek/tenant-a/signed-del", None),
    ("POST", "generate", {"id": "tenant-a/gen", "size": 32}),
    ("POST", "unwrap", {"id": "tenant-a/x", "blob": "S0JESw=="}),
    ("POST", "rewrap", {"id": "tenant-a/x", "blob": "S0JESw=="}),
    ("GET", "ids?prefix=tenant-a/", None),
    ("GET", "status", None),
)


def _signed(
    kb: KeyBroker,
    method: str,
    path: str,
    body: bytes,
    *,
    content_sha256: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request botocore signed (service ``kms``) with the full account."""
    acct = kb.accounts["full"]
    headers = {"Content-Type": "application/json"} if body else {}
    if content_sha256 is not None:
        headers["X-Amz-Content-SHA256"] = content_sha256
    headers.update(extra or {})
    req = AWSRequest(method=method, url=f"{kb.url}{PREFIX}/{path}", data=body, headers=headers)
    SigV4Auth(Credentials(acct.access_key, acct.secret_key), "kms", "us-east-1").add_auth(req)
    return dict(req.prepare().headers)


def _send(
    kb: KeyBroker, method: str, path: str, headers: dict[str, str], body: bytes
) -> requests.Response:
    return requests.request(
        method, f"{kb.url}{PREFIX}/{path}", headers=headers, data=body, timeout=10
    )


@pytest.mark.parametrize("marker", MARKERS)
@pytest.mark.parametrize(("method", "path", "doc"), ROUTES)
def test_every_unsigned_or_streaming_marker_is_refused_on_every_route(
    kb: KeyBroker, method: str, path: str, doc: dict[str, object] | None, marker: str
) -> None:
    body = json.dumps(doc).encode() if doc is not None else b""
    extra = {}
    if marker.startswith("STREAMING-"):  # what a chunked upload declares besides the marker
        extra = {"X-Amz-Decoded-Content-Length": str(len(body)), "Content-Encoding": "aws-chunked"}
        if marker.endswith("TRAILER"):
            extra["X-Amz-Trailer"] = "x-amz-checksum-crc32"
    headers = _signed(kb, method, path, body, content_sha256=marker, extra=extra)
    answer = _send(kb, method, path, headers, body)
    assert answer.status_code == 401, answer.text
    assert error_code(answer) == "Proxy.ValidateCredentialErr"
    assert "sign the body" in answer.json()["ResponseMetadata"]["Error"]["Message"]
    assert "plaintext" not in answer.text


@pytest.mark.parametrize(("method", "path", "doc"), ROUTES)
def test_a_body_hashed_by_the_sdk_still_works(
    kb: KeyBroker, method: str, path: str, doc: dict[str, object] | None
) -> None:
    body = json.dumps(doc).encode() if doc is not None else b""
    digest = hashlib.sha256(body).hexdigest()
    for claimed in (None, digest):  # hashed by the signer, or claimed in the header
        if method == "DELETE":  # one delete per id
            path = f"dek/tenant-a/{secrets.token_hex(4)}"
            assert kb.call("GET", path).status_code == 200
        headers = _signed(kb, method, path, body, content_sha256=claimed)
        answer = _send(kb, method, path, headers, body)
        if path in ("unwrap", "rewrap"):  # a bogus blob: the request got through to the store
            assert answer.status_code == 400, answer.text
            assert "blob" in answer.text
        else:
            assert answer.status_code == 200, answer.text


def test_a_captured_request_carries_no_other_body(kb: KeyBroker) -> None:
    mine = json.dumps({"id": "tenant-a/mine", "size": 32}).encode()
    other = json.dumps({"id": "tenant-b/theirs", "size": 32}).encode()
    for claimed in (None, hashlib.sha256(mine).hexdigest()):
        headers = _signed(kb, "POST", "generate", mine, content_sha256=claimed)
        answer = _send(kb, "POST", "generate", headers, other)
        assert answer.status_code == 401, answer.text
        assert "plaintext" not in answer.text


_MARKERISH = st.one_of(
    st.sampled_from(MARKERS).flatmap(
        lambda m: st.sampled_from([m.lower(), m.title(), m.replace("-", "_"), m + "-X", m[:-1]])
    ),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-_0123456789 ", min_size=1, max_size=48).filter(
        lambda t: t.strip() == t
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=_MARKERISH, route=st.sampled_from(ROUTES))
def test_no_other_spelling_of_a_marker_gets_a_key(
    kb: KeyBroker, value: str, route: tuple[str, str, dict[str, object] | None]
) -> None:
    method, path, doc = route
    if method == "DELETE":
        path = "dek/tenant-a/never-there"
    body = json.dumps(doc).encode() if doc is not None else b""
    headers = _signed(kb, method, path, body, content_sha256=value)
    answer = _send(kb, method, path, headers, body)
    assert answer.status_code in (400, 401), (value, answer.status_code, answer.text)
    assert "plaintext" not in answer.text
