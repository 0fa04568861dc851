"""Library use: request/response hooks see the request (never a secret) and may refuse it."""

from __future__ import annotations

from keybroker.context import RequestContext
from keybroker.errors import Forbidden
from keybroker.proxy.hooks import Hooks
from keybroker.settings import Config
from tests.proxy.conftest import AwsSetup, aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws

STS = "https://sts.us-east-1.amazonaws.com/"
BODY = b"Action=GetCallerIdentity&Version=2011-06-15"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def _config(aws: AwsSetup) -> Config:
    return Config(
        endpoints=[
            aws_endpoint(
                "aws-main", aws.proxy_ak, aws.proxy_sk, aws.real_ak, aws.real_sk, aws.moto_url
            )
        ]
    )


def test_hooks_see_each_request_once(aws: AwsSetup) -> None:
    before: list[RequestContext] = []
    after: list[RequestContext] = []

    async def async_after(ctx: RequestContext) -> None:
        after.append(ctx)

    hooks = Hooks(before_forward=[before.append], after_response=[async_after])
    with proxy_running(_config(aws), hooks=hooks) as (url, _):
        signed = sign_aws(
            "POST", STS, ak=aws.proxy_ak, sk=aws.proxy_sk, service="sts", body=BODY, headers=FORM
        )
        assert send(url, "POST", STS, signed, account="aws-main", body=BODY).status == 200
        bad = sign_aws(
            "POST", STS, ak=aws.proxy_ak, sk="wrong", service="sts", body=BODY, headers=FORM
        )
        assert send(url, "POST", STS, bad, account="aws-main", body=BODY).status == 401
    # the client's id is kept beside the proxy's own, never in its place
    assert [c.client_request_id for c in before] == ["platform-req-1"]
    assert [len(c.request_id) for c in before] == [32]
    assert (
        before[0].account == "aws-main" and before[0].service == "sts" and before[0].vendor == "aws"
    )
    assert [c.status for c in after] == [200, 401]
    assert after[1].error_code == "Proxy.ValidateCredentialErr"
    for ctx in after:
        assert aws.proxy_sk not in repr(ctx) and aws.real_sk not in repr(ctx)


def test_before_forward_hook_can_refuse(aws: AwsSetup) -> None:
    def deny(ctx: RequestContext) -> None:
        raise Forbidden("denied by policy hook")

    with proxy_running(_config(aws), hooks=Hooks(before_forward=[deny])) as (url, _):
        signed = sign_aws(
            "POST", STS, ak=aws.proxy_ak, sk=aws.proxy_sk, service="sts", body=BODY, headers=FORM
        )
        r = send(url, "POST", STS, signed, account="aws-main", body=BODY)
    assert r.status == 403
    assert r.json()["ResponseMetadata"]["Error"] == {
        "Code": "Proxy.Forbidden",
        "Message": "denied by policy hook",
    }


def test_a_failing_hook_is_a_generic_500_with_request_id(aws: AwsSetup) -> None:
    def broken(ctx: RequestContext) -> None:
        raise RuntimeError("internal detail that must not leak")

    with proxy_running(_config(aws), hooks=Hooks(before_forward=[broken])) as (url, _):
        signed = sign_aws(
            "POST", STS, ak=aws.proxy_ak, sk=aws.proxy_sk, service="sts", body=BODY, headers=FORM
        )
        r = send(url, "POST", STS, signed, account="aws-main", body=BODY)
    assert r.status == 500
    assert b"internal detail" not in r.body
    assert r.json()["ResponseMetadata"]["RequestId"] == "platform-req-1"
