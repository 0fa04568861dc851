"""Tencent, Alibaba Cloud and UCloud: the operation is the action each vendor's gateway reads
(``X-TC-Action``, ``Action`` / ``x-acs-action``, ``Action``), from requests their own SDKs
signed; another ``Action`` elsewhere is refused, an Alibaba ROA (REST) call is unclassified."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from multidict import CIMultiDict

from keybroker.errors import MalformedRequest, MalformedSignature
from keybroker.signers import aliyun, tencent, ucloud
from keybroker.signers.base import Operation, ParsedAuth, SigningRequest
from tests.signers.tencent_upstream import sdk_client, sdk_signed
from tests.signers.test_aliyun import PROXY as ALI_PROXY
from tests.signers.test_aliyun import core_sign, tea_sign
from tests.signers.test_tencent import PROXY as TC_PROXY
from tests.signers.test_ucloud import form_request
from tests.signers.test_ucloud import sdk_signed as ucloud_signed


def _tencent(action: str, scheme: str, method: str) -> SigningRequest:
    secret = TC_PROXY.secret_key.reveal()
    client = sdk_client("cvm.tencentcloudapi.com", TC_PROXY.access_key, secret,
                        method=method, sign_method=scheme)  # fmt: skip
    return sdk_signed(client, action, {"Limit": 1}, 1717171717)


@pytest.mark.parametrize(
    ("action", "read"),
    [("DescribeInstances", True), ("TerminateInstances", False), ("GetFederationToken", False)],
)
@pytest.mark.parametrize(
    ("scheme", "method"),
    [
        ("TC3-HMAC-SHA256", "POST"),
        ("TC3-HMAC-SHA256", "GET"),
        ("HmacSHA256", "GET"),
        ("HmacSHA256", "POST"),
    ],
)
def test_tencent_sdk_calls(action: str, read: bool, scheme: str, method: str) -> None:
    req = _tencent(action, scheme, method)
    op = tencent.SIGNER.operation(req, tencent.SIGNER.parse(req), req.body)
    assert (op.action, op.read_only) == (action, read)


def test_tencent_another_action_in_the_query_is_refused() -> None:
    req = _tencent("TerminateInstances", "TC3-HMAC-SHA256", "GET")
    req.query += "&Action=DescribeInstances"
    with pytest.raises(MalformedRequest):
        tencent.SIGNER.operation(req, tencent.SIGNER.parse(req), req.body)


@pytest.mark.parametrize(("action", "read"), [("DescribeRegions", True), ("DeleteInstance", False)])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_aliyun_rpc_sdk_calls(action: str, read: bool, method: str) -> None:
    params = {"Action": action, "Version": "2014-05-26"}
    req = (
        core_sign(method=method, params=params)
        if method == "GET"
        else core_sign(method="POST", params=params, body={"RegionId": "cn-hangzhou"})
    )
    op = aliyun.SIGNER.operation(req, aliyun.SIGNER.parse(req), req.body)
    assert (op.action, op.read_only) == (action, read)


def test_aliyun_acs3_rpc_and_roa() -> None:
    rpc = tea_sign(ALI_PROXY)
    op = aliyun.SIGNER.operation(rpc, aliyun.SIGNER.parse(rpc), rpc.body)
    assert (op.action, op.read_only) == ("RunInstances", False)
    # ROA: the path decides what runs, not x-acs-action
    roa = tea_sign(ALI_PROXY, method="DELETE", path="/clusters/c1", body="")
    op = aliyun.SIGNER.operation(roa, aliyun.SIGNER.parse(roa), roa.body)
    assert (op.action, op.read_only) == (None, False)
    get = tea_sign(ALI_PROXY, method="GET", path="/clusters", body="", content_type=None)
    op = aliyun.SIGNER.operation(get, aliyun.SIGNER.parse(get), get.body)
    assert (op.action, op.read_only) == (None, True)


def test_aliyun_rpc_form_body_naming_another_action_is_refused() -> None:
    req = core_sign(method="POST", params={"Action": "DescribeRegions", "Version": "2014-05-26"},
                    body={"RegionId": "cn-hangzhou"})  # fmt: skip
    assert req.body is not None
    req.body += b"&action=DeleteInstance"
    with pytest.raises(MalformedRequest):
        aliyun.SIGNER.operation(req, aliyun.SIGNER.parse(req), req.body)


@pytest.mark.parametrize(
    ("params", "read"),
    [({"Action": "DescribeUHostInstance", "Region": "cn-bj2"}, True),
     ({"Action": "TerminateUHostInstance", "Region": "cn-bj2"}, False)],
)  # fmt: skip
@pytest.mark.parametrize("where", ["query", "form"])
def test_ucloud_sdk_calls(params: dict[str, Any], read: bool, where: str) -> None:
    flat = ucloud_signed(params)
    if where == "query":
        req = SigningRequest("GET", "api.ucloud.cn", "/", urlencode(flat), CIMultiDict())
    else:
        req = form_request(flat)
    op = ucloud.SIGNER.operation(req, ucloud.SIGNER.parse(req), req.body)
    assert op == Operation(None, params["Action"], None, read)


def test_ucloud_query_action_beside_a_form_body_is_refused() -> None:
    """UCloud's parse already refuses parameters in both places: no second reading."""
    req = form_request(ucloud_signed({"Action": "TerminateUHostInstance"}))
    req.query = "action=DescribeUHostInstance"
    with pytest.raises(MalformedSignature, match="both the query and the body"):
        ucloud.SIGNER.parse(req)


@pytest.mark.parametrize(
    "vendor", ["huawei", "baidu", "jingdong", "akamai", "qiniu", "wangsu", "baishan"]
)
@pytest.mark.parametrize(
    ("method", "headers", "read"),
    [
        ("GET", {}, True),
        ("HEAD", {}, True),
        ("POST", {}, False),
        ("DELETE", {}, False),
        ("GET", {"X-HTTP-Method-Override": "DELETE"}, False),
        ("GET", {"x-http-method": "PUT"}, False),
        ("GET", {"X-Method-Override": "PATCH"}, False),
    ],
)
def test_rest_vendors_read_only_by_method(
    vendor: str, method: str, headers: dict[str, str], read: bool
) -> None:
    """REST vendors without an action name: unclassified, read-only only for GET/HEAD that
    ask for no other method."""
    from keybroker import signers
    from keybroker.proxy.checks import request_operation
    from keybroker.proxy.routing import Route
    from keybroker.settings import Endpoint

    signer = signers.get(vendor)
    endpoint = Endpoint("acct", vendor, ALI_PROXY, ALI_PROXY)
    req = SigningRequest(method, "api.example.com", "/v1/things/1", "", CIMultiDict(headers))
    auth = ParsedAuth("ak", service="svc")
    op = request_operation(Route(endpoint, signer, auth, req, None), auth, b"")
    assert op == Operation("svc", None, None, read)
