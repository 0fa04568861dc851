"""Attack on the policy's reading of ``Action``: a form body the proxy could not decode as
ASCII was read as naming no action at all, so one raw non-ASCII byte anywhere in the body hid
its ``Action=TerminateInstances`` while the query's ``Action=DescribeInstances`` made a
read-only (or deny-listed) account forward it.  The vendor decodes the form as UTF-8 and reads
the ``Action`` either way: the request names two operations and must be refused (400)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from keybroker.errors import MalformedRequest
from keybroker.settings import Config, Policy
from keybroker.signers._action_params import query_actions
from keybroker.signers.base import SigningRequest
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import Recorder, recording_upstream

PROXY_AK, PROXY_SK = "AKIDPROXYACT" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
REAL_AK, REAL_SK = "AKIDREALACT" + secrets.token_hex(4).upper(), secrets.token_urlsafe(24)
logscan.register(PROXY_SK, REAL_SK)

_FORM = "application/x-www-form-urlencoded; charset=utf-8"
_BODIES = [
    b"Action=TerminateInstances&InstanceId.1=i-1&Version=2016-11-15&Note=\xc3\xa9",
    b"Note=\xff&Action=TerminateInstances&InstanceId.1=i-1&Version=2016-11-15",
]


@pytest.fixture(scope="module", params=["read-only", "deny"])
def proxy(request: pytest.FixtureRequest) -> Iterator[tuple[str, Recorder]]:
    with recording_upstream() as rec:
        ep = aws_endpoint("act-atk", PROXY_AK, PROXY_SK, REAL_AK, REAL_SK, rec.url)
        if request.param == "read-only":
            ep.policy = Policy(preset="read-only")
        else:
            ep.policy = Policy(deny_actions=["ec2:TerminateInstances"])
        with proxy_running(Config(endpoints=[ep])) as (url, _):
            yield url, rec


def _send(url: str, target: str, body: bytes) -> int:
    req = AWSRequest(method="POST", url=url + target, data=body, headers={"Content-Type": _FORM})
    SigV4Auth(Credentials(PROXY_AK, PROXY_SK), "ec2", "us-east-1").add_auth(req)
    prepared = req.prepare()
    got = requests.post(prepared.url, headers=dict(prepared.headers), data=body, timeout=30,
                        allow_redirects=False)  # fmt: skip
    return got.status_code


@pytest.mark.parametrize("body", _BODIES)
def test_non_ascii_form_body_does_not_hide_its_action(
    proxy: tuple[str, Recorder], body: bytes
) -> None:
    url, rec = proxy
    before = len(rec.seen)
    status = _send(url, "/?Action=DescribeInstances&Version=2016-11-15", body)
    assert rec.seen[before:] == [], "a TerminateInstances body went upstream as a read"
    assert status == 400


@pytest.mark.parametrize("body", _BODIES)
def test_non_ascii_form_body_alone_is_classified(proxy: tuple[str, Recorder], body: bytes) -> None:
    """Without the query's decoy, the body's own action decides (and is refused as a write)."""
    url, rec = proxy
    before = len(rec.seen)
    assert _send(url, "/", body) == 403
    assert rec.seen[before:] == []


@pytest.mark.parametrize("body", _BODIES)
def test_rpc_vendors_read_the_action_of_a_non_ascii_form(body: bytes) -> None:
    """Volcengine, Alibaba, Tencent and UCloud read a form body only (``form_only``)."""
    headers = CIMultiDict({"Content-Type": _FORM, "Content-Length": str(len(body))})
    req = SigningRequest("POST", "open.volcengineapi.com", "/", "Action=ListUsers", headers)
    with pytest.raises(MalformedRequest):
        query_actions(req, body, form_only=True)
    alone = SigningRequest("POST", "open.volcengineapi.com", "/", "", headers)
    assert query_actions(alone, body, form_only=True) == {"TerminateInstances"}
