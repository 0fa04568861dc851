"""Regenerate the Tencent Cloud known-answer vectors.

Run from the repository root: ``python tests/vectors/tencent/generate.py``.

``sdk.json`` — every case is built and signed by ``tencentcloud-sdk-python-common``'s own
request builder (``CommonClient._build_req_inter``) with its clock and nonce pinned, so the
output is reproducible.

``doc.json`` — the worked examples of Tencent Cloud's public API documentation, with the
signatures the pages publish (not recomputed here):

* signature v3: the ``DescribeInstances`` POST example (timestamp 1551113065), published
  signature ``72e494ea...5168``;
* signature v1: the ``DescribeInstances`` GET example (timestamp 1465185768, nonce 11886),
  published signature ``EliP9YW3pW28FpsEdkXt/+WcGeI=``.  (One English revision of that page
  prints ``v9MVG3fopp/gCsLSZ4gMFeYGgDU=``, which does not match its own inputs; every other
  revision and language prints the value used here.)
"""

from __future__ import annotations

import json
import types
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tencentcloud.common import abstract_client, credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

HERE = Path(__file__).parent
SDK = f"tencentcloud-sdk-python-common {version('tencentcloud-sdk-python-common')}"
DOC_V3_URL = "https://www.tencentcloud.com/document/product/267/37447"
DOC_V1_URL = "https://www.tencentcloud.com/zh/document/product/228/31724"
DOC_ID, DOC_KEY = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"


def sdk_case(
    name: str,
    *,
    host: str,
    sign_method: str,
    method: str,
    action: str,
    params: dict[str, Any],
    timestamp: int,
    service: str = "cvm",
    region: str = "ap-guangzhou",
    token: str | None = None,
    nonce: int = 11886,
    unsigned_payload: bool = False,
    ak: str = "AKIDproxyEXAMPLE",
    sk: str = "proxy/Secret+Key==",
) -> dict[str, Any]:
    http = HttpProfile(endpoint=host, reqMethod=method)
    profile = ClientProfile(signMethod=sign_method, httpProfile=http, language="en-US")
    profile.unsignedPayload = unsigned_payload
    client = CommonClient(service, "2017-03-12", credential.Credential(ak, sk, token), region,
                          profile=profile)  # fmt: skip
    req = RequestInternal(host, method, "/", header={})
    saved = abstract_client.time, abstract_client.random
    abstract_client.time = types.SimpleNamespace(time=lambda: timestamp)  # type: ignore[assignment]
    abstract_client.random = types.SimpleNamespace(randint=lambda a, b: nonce)  # type: ignore[assignment]
    try:
        client._build_req_inter(action, params, req, {})
    finally:
        abstract_client.time, abstract_client.random = saved
    headers = {k: str(v) for k, v in req.header.items() if k != "Host"}
    data = str(req.data)
    expected = (
        {"authorization": headers["Authorization"]}
        if sign_method == "TC3-HMAC-SHA256"
        else {"signature": dict(_pairs(data))["Signature"]}
    )
    return {
        "name": name,
        "source": f"{SDK} CommonClient ({sign_method})",
        "request": {
            "method": method,
            "host": host,
            "path": "/",
            "query": data if method == "GET" else "",
            "headers": headers,
            "body": "" if method == "GET" else data,
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": token},
        "service": service if sign_method == "TC3-HMAC-SHA256" else None,
        "region": region,
        "action": action,
        "timestamp": timestamp,
        "expected": expected,
    }


def _pairs(text: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(text, keep_blank_values=True)


def sdk_cases() -> list[dict[str, Any]]:
    filters = {"Limit": 1, "Filters": [{"Name": "instance-name", "Values": ["未命名", "a b+c/&="]}]}
    return [
        sdk_case("tc3-post-json", host="cvm.tencentcloudapi.com", sign_method="TC3-HMAC-SHA256",
                 method="POST", action="DescribeInstances", params=filters,
                 timestamp=1551113065),
        sdk_case("tc3-get-form", host="cvm.tencentcloudapi.com", sign_method="TC3-HMAC-SHA256",
                 method="GET", action="DescribeInstances", params=filters,
                 timestamp=1704067199),
        sdk_case("tc3-post-token-other-service", host="cbs.tencentcloudapi.com",
                 sign_method="TC3-HMAC-SHA256", method="POST", action="DescribeDisks",
                 params={"Limit": 5}, timestamp=1709251199, service="cbs",
                 region="ap-shanghai", token="tmpTOKENexample"),
        sdk_case("tc3-unsigned-payload", host="cvm.tencentcloudapi.com",
                 sign_method="TC3-HMAC-SHA256", method="POST", action="DescribeRegions",
                 params={}, timestamp=1718409600, unsigned_payload=True),
        sdk_case("tc3-host-with-port", host="127.0.0.1:8443", sign_method="TC3-HMAC-SHA256",
                 method="POST", action="DescribeZones", params={"Offset": 0},
                 timestamp=1735689600),
        sdk_case("v1-sha1-post-form", host="cvm.tencentcloudapi.com", sign_method="HmacSHA1",
                 method="POST", action="DescribeInstances", params=filters,
                 timestamp=1551113065, nonce=5316094012149626242),
        sdk_case("v1-sha256-get", host="cvm.tencentcloudapi.com", sign_method="HmacSHA256",
                 method="GET", action="DescribeInstances", params=filters,
                 timestamp=1704067199, nonce=42),
        sdk_case("v1-sha256-post-token", host="cbs.tencentcloudapi.com",
                 sign_method="HmacSHA256", method="POST", action="DescribeDisks",
                 params={"Limit": 5, "Disk_Ids": ["disk-1"]}, timestamp=1709251199,
                 region="ap-shanghai", token="tmpTOKENexample", nonce=7),
    ]  # fmt: skip


def doc_cases() -> list[dict[str, Any]]:
    body = (
        '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    )
    v3 = {
        "name": "doc-v3-describe-instances",
        "source": DOC_V3_URL + " (Signature v3 worked example; same on every product's page)",
        "request": {
            "method": "POST",
            "host": "cvm.tencentcloudapi.com",
            "path": "/",
            "query": "",
            "headers": {
                "Authorization": f"TC3-HMAC-SHA256 Credential={DOC_ID}/2019-02-25/cvm/"
                "tc3_request, SignedHeaders=content-type;host, Signature="
                "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
                "Content-Type": "application/json; charset=utf-8",
                "X-TC-Action": "DescribeInstances",
                "X-TC-Version": "2017-03-12",
                "X-TC-Timestamp": "1551113065",
                "X-TC-Region": "ap-guangzhou",
            },
            "body": body,
        },
        "credential": {"access_key": DOC_ID, "secret_key": DOC_KEY, "session_token": None},
        "service": "cvm",
        "region": "ap-guangzhou",
        "action": "DescribeInstances",
        "timestamp": 1551113065,
        "expected": {
            "authorization": "TC3-HMAC-SHA256 Credential="
            f"{DOC_ID}/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, "
            "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168",
            "hashed_canonical_request": "5ffe6a04c0664d6b969fab9a13bdab20"
            "1d63ee709638e2749d62a09ca18d7031",
        },
    }
    params = [
        ("Action", "DescribeInstances"),
        ("InstanceIds.0", "ins-09dx96dg"),
        ("Limit", "20"),
        ("Nonce", "11886"),
        ("Offset", "0"),
        ("Region", "ap-guangzhou"),
        ("SecretId", DOC_ID),
        ("Timestamp", "1465185768"),
        ("Version", "2017-03-12"),
        ("Signature", "EliP9YW3pW28FpsEdkXt/+WcGeI="),
    ]
    v1 = {
        "name": "doc-v1-describe-instances",
        "source": DOC_V1_URL + " (Signature (v1) worked example; same on every product's page)",
        "request": {
            "method": "GET",
            "host": "cvm.tencentcloudapi.com",
            "path": "/",
            "query": urlencode(params),
            "headers": {},
            "body": "",
        },
        "credential": {"access_key": DOC_ID, "secret_key": DOC_KEY, "session_token": None},
        "service": None,
        "region": "ap-guangzhou",
        "action": "DescribeInstances",
        "timestamp": 1465185768,
        "expected": {
            "signature": "EliP9YW3pW28FpsEdkXt/+WcGeI=",
            "string_to_sign": "GETcvm.tencentcloudapi.com/?Action=DescribeInstances"
            "&InstanceIds.0=ins-09dx96dg&Limit=20&Nonce=11886&Offset=0&Region=ap-guangzhou"
            f"&SecretId={DOC_ID}&Timestamp=1465185768&Version=2017-03-12",
        },
    }
    return [v3, v1]


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", doc_cases())):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
