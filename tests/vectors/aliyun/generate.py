"""Regenerate the Alibaba Cloud known-answer vectors with the vendor SDKs' own signing code.

Run from the repository root: ``python tests/vectors/aliyun/generate.py``.

* RPC ``HMAC-SHA1``: ``aliyunsdkcore.auth.composer.rpc_signature_composer.get_signed_url``
  (aliyun-python-sdk-core; its clock and nonce are pinned so the output is reproducible) and
  ``alibabacloud_tea_openapi.utils.Utils.get_rpcsignature`` (the tea SDK's v2 signer).
* ``ACS3-HMAC-SHA256``: ``alibabacloud_tea_openapi.utils.Utils.get_authorization`` over the
  headers the tea client sends, with a fixed ``x-acs-date`` and nonce.
* ``doc.json``: the worked examples of the public documentation (URLs in each case).

The tests recompute every signature with keybroker's code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.utils import parameter_helper
from darabonba.request import DaraRequest

HERE = Path(__file__).parent
CORE = f"aliyun-python-sdk-core {version('aliyun-python-sdk-core')} get_signed_url"
TEA = f"alibabacloud-tea-openapi {version('alibabacloud-tea-openapi')} Utils"
FORM = "application/x-www-form-urlencoded"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AK, SK = "LTAI5tProxyExampleKey", "c2VjcmV0L3Byb3h5K2tleQ=="


@contextmanager
def core_clock(timestamp: str, nonce: str) -> Iterator[None]:
    """Pin aliyun-python-sdk-core's ``Timestamp`` and ``SignatureNonce``."""
    saved = parameter_helper.get_iso_8061_date, parameter_helper.get_uuid
    parameter_helper.get_iso_8061_date = lambda: timestamp
    parameter_helper.get_uuid = lambda: nonce
    try:
        yield
    finally:
        parameter_helper.get_iso_8061_date, parameter_helper.get_uuid = saved


def _cred(ak: str, sk: str, token: str | None) -> dict[str, Any]:
    return {"access_key": ak, "secret_key": sk, "session_token": token}


def core_rpc_case(
    name: str,
    *,
    method: str,
    params: dict[str, str],
    body: dict[str, str] | None = None,
    timestamp: str,
    nonce: str,
    ak: str = AK,
    sk: str = SK,
    token: str | None = None,
) -> dict[str, Any]:
    """An RPC request as aliyun-python-sdk-core sends it (query signed, form body signed)."""
    params = dict(params)
    if token:
        params["SecurityToken"] = token  # what its StsTokenSigner adds before signing
    with core_clock(timestamp, nonce):
        url, string_to_sign = rpc_signature_composer.get_signed_url(
            params, ak, sk, "JSON", method, dict(body or {})
        )
    headers = {"Content-Type": FORM} if body else {}
    return {
        "name": name,
        "source": CORE,
        "scheme": "rpc",
        "request": {
            "method": method,
            "host": "ecs.cn-hangzhou.aliyuncs.com",
            "path": "/",
            "query": url.removeprefix("/?"),
            "headers": headers,
            "body": urlencode(body) if body else "",
        },
        "credential": _cred(ak, sk, token),
        "signed_at": timestamp,
        "expected": {"string_to_sign": string_to_sign, "signature": _signature_of(url)},
    }


def _signature_of(url: str) -> str:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(url.partition("?")[2]))["Signature"]


def tea_rpc_body_case(name: str, *, timestamp: str, nonce: str) -> dict[str, Any]:
    """Every parameter, credential included, in a form body, signed by the tea v2 signer."""
    params = {
        "Action": "CreateVpc",
        "Version": "2016-04-28",
        "Format": "json",
        "RegionId": "cn-shanghai",
        "VpcName": "vpc ünï*~",
        "Timestamp": timestamp,
        "SignatureNonce": nonce,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": AK,
    }
    params["Signature"] = Utils.get_rpcsignature(dict(params), "POST", SK)
    return {
        "name": name,
        "source": f"{TEA}.get_rpcsignature",
        "scheme": "rpc",
        "request": {
            "method": "POST",
            "host": "vpc.cn-shanghai.aliyuncs.com",
            "path": "/",
            "query": "",
            "headers": {"Content-Type": FORM},
            "body": urlencode(params),
        },
        "credential": _cred(AK, SK, None),
        "signed_at": timestamp,
        "expected": {"signature": params["Signature"]},
    }


def tea_acs3_case(
    name: str,
    *,
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    action: str,
    api_version: str,
    date: str,
    nonce: str,
    body: str = "",
    content_type: str | None = None,
    token: str | None = None,
    ak: str = AK,
    sk: str = SK,
) -> dict[str, Any]:
    """An ACS3 request with the headers ``Client.do_request`` sends, signed by the tea SDK."""
    payload = hashlib.sha256(body.encode()).hexdigest()
    headers = {
        "host": host,
        "x-acs-version": api_version,
        "x-acs-action": action,
        "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11 Core/0.4.3 TeaDSL/2",
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "accept": "application/json",
    }
    if content_type:
        headers["content-type"] = content_type
    headers["x-acs-content-sha256"] = payload
    if token:
        headers["x-acs-accesskey-id"] = ak
        headers["x-acs-security-token"] = token
    request = DaraRequest()
    request.method, request.pathname, request.query, request.headers = method, path, query, headers
    headers["Authorization"] = Utils.get_authorization(request, "ACS3-HMAC-SHA256", payload, ak, sk)
    return {
        "name": name,
        "source": f"{TEA}.get_authorization",
        "scheme": "acs3",
        "request": {
            "method": method,
            "host": host,
            "path": path,
            "query": urlencode(query),
            "headers": headers,
            "body": body,
        },
        "credential": _cred(ak, sk, token),
        "signed_at": date,
        "expected": {"authorization": headers["Authorization"]},
    }


def sdk_cases() -> list[dict[str, Any]]:
    rpc = {"Action": "DescribeRegions", "Version": "2014-05-26", "RegionId": "cn-hangzhou"}
    return [
        core_rpc_case(
            "rpc-get-describe-regions",
            method="GET",
            params=rpc,
            timestamp="2024-01-01T00:00:00Z",
            nonce="0f6a3c4d5e6f708192a3b4c5d6e7f809",
        ),
        core_rpc_case(
            "rpc-get-values-need-encoding",
            method="GET",
            params={**rpc, "Name": "a b+c*~/ü中", "Empty": "", "Tag.1.Key": "k=v&w"},
            timestamp="2024-02-29T23:59:59Z",
            nonce="1f6a3c4d5e6f708192a3b4c5d6e7f809",
        ),
        core_rpc_case(
            "rpc-post-form-body",
            method="POST",
            params={"Action": "RunInstances", "Version": "2014-05-26"},
            body={"RegionId": "cn-beijing", "InstanceName": "web 01", "Tag.1.Value": "x+y"},
            timestamp="2024-06-15T08:18:05Z",
            nonce="2f6a3c4d5e6f708192a3b4c5d6e7f809",
        ),
        core_rpc_case(
            "rpc-get-sts-token",
            method="GET",
            params=rpc,
            timestamp="2025-07-07T07:07:07Z",
            nonce="3f6a3c4d5e6f708192a3b4c5d6e7f809",
            ak="STS.NUexampleTemporaryKey",
            sk="another/secret+key==",
            token="CAIS+exampleSecurityToken/==",
        ),
        tea_rpc_body_case(
            "rpc-credentials-in-form-body",
            timestamp="2024-03-04T05:06:07Z",
            nonce="4f6a3c4d5e6f708192a3b4c5d6e7f809",
        ),
        tea_acs3_case(
            "acs3-rpc-style-get",
            method="GET",
            host="ecs.cn-hangzhou.aliyuncs.com",
            path="/",
            query={"RegionId": "cn-hangzhou", "PageSize": "10"},
            action="DescribeInstances",
            api_version="2014-05-26",
            date="2024-01-01T00:00:00Z",
            nonce="5a1b2c3d4e5f60718293a4b5c6d7e8f9",
        ),
        tea_acs3_case(
            "acs3-roa-json-body",
            method="POST",
            host="cs.cn-beijing.aliyuncs.com",
            path="/clusters/c1234/triggers",
            query={},
            action="CreateTrigger",
            api_version="2015-12-15",
            date="2024-02-29T23:59:59Z",
            nonce="6a1b2c3d4e5f60718293a4b5c6d7e8f9",
            body='{"cluster_id":"c1234","action":"redeploy","name":"ünï"}',
            content_type="application/json; charset=utf-8",
        ),
        tea_acs3_case(
            "acs3-form-body-sts-token",
            method="POST",
            host="vpc.cn-shanghai.aliyuncs.com",
            path="/",
            query={"RegionId": "cn-shanghai"},
            action="CreateVpc",
            api_version="2016-04-28",
            date="2025-07-07T07:07:07Z",
            nonce="7a1b2c3d4e5f60718293a4b5c6d7e8f9",
            body=urlencode({"VpcName": "a b", "CidrBlock": "10.0.0.0/8"}),
            content_type=FORM,
            ak="STS.NUexampleTemporaryKey",
            sk="another/secret+key==",
            token="CAIS+exampleSecurityToken/==",
        ),
        tea_acs3_case(
            "acs3-query-needs-encoding",
            method="GET",
            host="127.0.0.1:8443",
            path="/",
            query={"Name": "a b+c*~/ü中", "Empty": "", "Filter.1.Value": "k=v&w"},
            action="DescribeThings",
            api_version="2020-01-01",
            date="2023-12-31T12:00:00Z",
            nonce="8a1b2c3d4e5f60718293a4b5c6d7e8f9",
        ),
    ]


ACS3_DOC = (
    "https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature"
)
RPC_DOC = "https://developer.aliyun.com/ask/210168"


def doc_cases() -> list[dict[str, Any]]:
    """The published worked examples, with the published signatures (not recomputed here)."""
    acs3_headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-content-sha256": EMPTY_SHA256,
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-version": "2014-05-26",
    }
    signed = ";".join(acs3_headers)
    acs3_headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders={signed},"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )
    query = "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai"
    acs3 = {
        "name": "doc-acs3-run-instances",
        "source": f"{ACS3_DOC} (signature example: request, key and signature as published)",
        "scheme": "acs3",
        "request": {
            "method": "POST",
            "host": "ecs.cn-shanghai.aliyuncs.com",
            "path": "/",
            "query": query,
            "headers": acs3_headers,
            "body": "",
        },
        "credential": _cred("YourAccessKeyId", "YourAccessKeySecret", None),
        "signed_at": "2023-10-26T10:22:32Z",
        "expected": {
            "authorization": acs3_headers["Authorization"],
            # The canonical request as the page prints it.
            "canonical_request": "\n".join(
                ["POST", "/", query]
                + [f"{k}:{v}" for k, v in acs3_headers.items() if k != "Authorization"]
                + ["", signed, EMPTY_SHA256]
            ),
        },
    }
    rpc = {
        "name": "doc-rpc-describe-regions",
        "source": (
            f"{RPC_DOC} (DescribeRegions example; the same signature appears in the URL of the "
            "'Signature mechanism' pages, e.g. https://www.alibabacloud.com/help/doc-detail/"
            "127287.htm).  The example spells the time parameter 'TimeStamp', so it is checked "
            "at the string-to-sign level only; the page prints the string to sign with its "
            "'%26' separators decoded — the string below is the correctly encoded one that "
            "gives the published signature."
        ),
        "scheme": "rpc-string",
        "params": {
            "TimeStamp": "2016-02-23T12:46:24Z",
            "Format": "XML",
            "AccessKeyId": "testid",
            "Action": "DescribeRegions",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
            "Version": "2014-05-26",
            "SignatureVersion": "1.0",
        },
        "method": "GET",
        "credential": _cred("testid", "testsecret", None),
        "expected": {
            "string_to_sign": (
                "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
                "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-"
                "4e0ad82fd6cf%26SignatureVersion%3D1.0%26TimeStamp%3D2016-02-23T12%253A46%253A24Z"
                "%26Version%3D2014-05-26"
            ),
            "signature": "CT9X0VtwR86fNWSnsc6v8YGOjuE=",
        },
    }
    return [acs3, rpc]


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", doc_cases())):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
