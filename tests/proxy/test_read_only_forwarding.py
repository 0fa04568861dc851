"""Read-only, end to end: whatever a holder of the proxy credential signs — any method, path,
sub-resource, Action, X-Amz-Target or header the vendor ignores — the upstream behind a
``Preset: read-only`` account receives only GET/HEAD for S3 and only read actions for the
RPC services.  A recording upstream sees exactly what was forwarded."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
import requests
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.settings import Config, Policy, SecurityConfig
from keybroker.signers._read_actions import is_read_action
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import Recorder, Seen, recording_upstream

PROXY_AK, PROXY_SK = "AKIDPROXYRO" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
REAL_AK, REAL_SK = "AKIDREALRO" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
logscan.register(PROXY_SK, REAL_SK)

_S3_WORDS = ["acl", "tagging", "uploads", "uploadId=u", "partNumber=1", "delete", "policy",
             "list-type=2", "restore", "select", "select-type=2", "session", "versionId=v",
             "Action=GetObject", "x-id=GetObject", "lifecycle", "cors", "retention"]  # fmt: skip
_ACTIONS = ["DescribeInstances", "TerminateInstances", "GetCallerIdentity", "AssumeRole",
            "GetSessionToken", "ListKeys", "ScheduleKeyDeletion", "ListUsers",
            "DeleteUser"]  # fmt: skip
_TARGETS = ["S3.GetObject", "TrentService.ListKeys", "TrentService.ScheduleKeyDeletion",
            "ec2.DescribeInstances", "DynamoDB_20120810.GetItem",
            "DynamoDB_20120810.DeleteTable"]  # fmt: skip


@pytest.fixture(scope="module")
def proxy() -> Iterator[tuple[str, Recorder]]:
    with recording_upstream() as rec:
        ep = aws_endpoint("ro", PROXY_AK, PROXY_SK, REAL_AK, REAL_SK, rec.url)
        ep.policy = Policy(preset="read-only")
        # every example is a new request; replays are another test's subject
        config = Config(endpoints=[ep], security=SecurityConfig(replay_cache="off"))
        with proxy_running(config) as (url, _):
            yield url, rec


@st.composite
def signed_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes, str]:
    service = draw(st.sampled_from(["s3", "ec2", "sts", "kms", "dynamodb", "iam"]))
    method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]))
    path = draw(st.sampled_from(["/", "/b", "/b/k", "/b/k/x"]))
    words = draw(st.lists(st.sampled_from(_S3_WORDS), max_size=3, unique=True))
    if draw(st.booleans()):
        words.append("Action=" + draw(st.sampled_from(_ACTIONS)))
    headers = {}
    if draw(st.booleans()):
        headers["X-Amz-Target"] = draw(st.sampled_from(_TARGETS))
    if draw(st.booleans()):
        headers["x-amz-copy-source"] = "a/b"
    body = b""
    if method in ("POST", "PUT") and draw(st.booleans()):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = ("Action=" + draw(st.sampled_from(_ACTIONS))).encode()
    query = "&".join(sorted(words))
    return method, path + (f"?{query}" if query else ""), headers, body, service


def _send(
    url: str, method: str, target: str, headers: dict[str, str], body: bytes, service: str
) -> int:
    req = AWSRequest(method=method, url=url + target, data=body, headers=headers)
    auth = S3SigV4Auth if service == "s3" else SigV4Auth
    auth(Credentials(PROXY_AK, PROXY_SK), service, "us-east-1").add_auth(req)
    prepared = req.prepare()
    got = requests.request(
        method,
        prepared.url,
        headers=dict(prepared.headers),
        data=body,
        timeout=30,
        allow_redirects=False,
    )
    return got.status_code


def _forwarded_is_a_read(seen: Seen, service: str) -> bool:
    if service == "s3":
        names = {k for k, _ in parse_qsl(seen.path_qs.partition("?")[2], keep_blank_values=True)}
        # ?session is CreateSession (session credentials) on a bucket; without a bucket
        # (path style, "/") the request is ListBuckets whatever its parameters
        bucketless = seen.path_qs.partition("?")[0] == "/"
        return seen.method in ("GET", "HEAD") and ("session" not in names or bucketless)
    if seen.method not in ("GET", "HEAD", "POST"):
        return False
    target = seen.headers.get("X-Amz-Target")
    query = parse_qsl(seen.path_qs.partition("?")[2], keep_blank_values=True)
    form = parse_qsl(seen.body.decode("ascii", "replace"), keep_blank_values=True)
    actions = {v for k, v in query + form if k.lower() == "action"}
    if service in ("kms", "dynamodb"):
        return target is not None and is_read_action(target.rpartition(".")[2])
    return len(actions) == 1 and is_read_action(actions.pop())


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(signed_requests())
def test_read_only_forwards_only_reads(
    proxy: tuple[str, Recorder], case: tuple[str, str, dict[str, str], bytes, str]
) -> None:
    url, rec = proxy
    method, target, headers, body, service = case
    before = len(rec.seen)
    status = _send(url, method, target, headers, body, service)
    forwarded = rec.seen[before:]
    assert len(forwarded) <= 1
    if forwarded:
        assert status == 200
        assert _forwarded_is_a_read(forwarded[0], service), (
            forwarded[0].method,
            forwarded[0].path_qs,
        )
    else:
        assert status in (400, 403), status


def test_reads_are_forwarded(proxy: tuple[str, Recorder]) -> None:
    """The property above is not vacuous: reads of every protocol go through."""
    url, rec = proxy
    cases = [
        ("GET", "/b/k", {}, b"", "s3"),
        ("HEAD", "/b", {}, b"", "s3"),
        ("GET", "/b?list-type=2", {}, b"", "s3"),
        (
            "POST",
            "/",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Action=DescribeInstances",
            "ec2",
        ),
        ("POST", "/", {"X-Amz-Target": "TrentService.ListKeys"}, b"{}", "kms"),
    ]
    for method, target, headers, body, service in cases:
        before = len(rec.seen)
        assert _send(url, method, target, headers, body, service) == 200
        assert len(rec.seen) == before + 1
