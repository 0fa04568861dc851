"""Regenerate the Huawei Cloud known-answer vectors with the vendor SDK's own signer.

Run from the repository root: ``python tests/vectors/huawei/generate.py``.  Every case in
``sdk.json`` is signed by ``huaweicloudsdkcore`` (``BasicCredentials.sign_request``); the SDK
takes the signing time from an ``X-Sdk-Date`` header when one is present, so each case sets it
and the output is reproducible.  ``doc.json`` holds the worked example of the public signing
guide, with the URL of every page its values come from.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest

HERE = Path(__file__).parent
SDK = f"huaweicloudsdkcore {version('huaweicloudsdkcore')} BasicCredentials.sign_request"
DOC_PAGES = (
    "https://support.huaweicloud.com/intl/th-th/devg-apisign/api-sign-algorithm-002.html",
    "https://support.huaweicloud.com/eu/fr-fr/devg-apisign/api-sign-algorithm-003.html",
    "https://support.huaweicloud.com/intl/ar-mena/devg-apisign/api-sign-algorithm-004.html",
)


def sdk_case(
    name: str,
    *,
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, Any]],
    headers: dict[str, str],
    body: str,
    ak: str,
    sk: str,
    sdk_date: str,
    project_id: str | None = "0123456789abcdef0123456789abcdef",
    token: str | None = None,
) -> dict[str, Any]:
    cred = BasicCredentials(ak, sk, project_id)
    if token:
        cred.with_security_token(token)
    req = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params={**headers, "X-Sdk-Date": sdk_date},
        body=body,
    )
    cred.sign_request(req)
    # uri is resource_path + "?" + query; the SDK's HTTP layer percent-encodes the path on
    # the wire, and the signature decodes it.
    wire_query = req.uri[len(req.resource_path) :].removeprefix("?")
    wire_path = quote(req.resource_path, safe="/~")
    return {
        "name": name,
        "source": SDK,
        "request": {
            "method": method,
            "host": host,
            "path": wire_path,
            "query": wire_query,
            "headers": dict(req.header_params),
            "body": body,
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": token},
        "sdk_date": sdk_date,
        "expected": {"authorization": req.header_params["Authorization"]},
    }


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def sdk_cases() -> list[dict[str, Any]]:
    common = {"ak": "HPUAPROXYEXAMPLE0001", "sk": "proxySecretKeyExample0123456789abcdefghij"}
    ua = {"User-Agent": "huaweicloud-usdk-python/3.0"}
    return [
        sdk_case(
            "get-list-servers",
            method="GET",
            host="ecs.cn-north-4.myhuaweicloud.com",
            path="/v1/0123456789abcdef0123456789abcdef/cloudservers/detail",
            query=[("limit", 10), ("offset", 1), ("name", "web server")],
            headers={"Content-Type": JSON, **ua},
            body="",
            sdk_date="20240101T000000Z",
            **common,
        ),
        sdk_case(
            "post-json-body",
            method="POST",
            host="vpc.ap-southeast-1.myhuaweicloud.com",
            path="/v1/0123456789abcdef0123456789abcdef/vpcs",
            query=[],
            headers={"Content-Type": "application/json;charset=UTF-8", **ua},
            body='{"vpc": {"name": "v\u00e9pc-1", "cidr": "192.168.0.0/16"}}',
            sdk_date="20240229T235959Z",
            **common,
        ),
        sdk_case(
            "form-body-unsigned-payload",
            method="POST",
            host="iam.myhuaweicloud.com",
            path="/v3/auth/tokens",
            query=[("nocatalog", "true")],
            headers={"Content-Type": FORM, **ua},
            body="a=1&b=two",
            sdk_date="20240301T120000Z",
            **common,
        ),
        sdk_case(
            "empty-body-unsigned-payload",
            method="GET",
            host="obs.cn-north-4.myhuaweicloud.com",
            path="/v1/things",
            query=[("marker", "x")],
            headers={"Content-Type": "text/plain", **ua},
            body="",
            sdk_date="20240302T000001Z",
            **common,
        ),
        sdk_case(
            "session-token",
            method="DELETE",
            host="ecs.cn-north-4.myhuaweicloud.com",
            path="/v1/0123456789abcdef0123456789abcdef/cloudservers/abc-123",
            query=[],
            headers={"Content-Type": JSON, **ua},
            body="",
            sdk_date="20240615T081805Z",
            token="temporarySecurityTokenExample+/=",
            **common,
        ),
        sdk_case(
            "host-with-port-and-sorted-query",
            method="GET",
            host="127.0.0.1:8443",
            path="/v2/items/",
            query=[("z", "1"), ("a", "b/c"), ("a", "a:b"), ("m", "\u4e2d\u6587"), ("e", "")],
            headers={"Content-Type": JSON, **ua},
            body="",
            sdk_date="20240501T010203Z",
            project_id=None,
            **common,
        ),
        sdk_case(
            "path-needs-encoding",
            method="PUT",
            host="rds.eu-west-101.myhuaweicloud.eu",
            path="/v3/p/instances/a b~c*d",
            query=[("flag", True)],
            headers={"Content-Type": JSON, "X-Language": "en-us", **ua},
            body='{"x": [1, 2, 3]}',
            sdk_date="20250707T070707Z",
            ak="HPUAOTHEREXAMPLE0002",
            sk="another/secret+key==",
        ),
    ]


def doc_case() -> dict[str, Any]:
    """The worked example of Huawei Cloud's "API Request Signing Guide".

    The guide builds the canonical request for ``GET /v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs
    ?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0`` on ``service.region.example.com``
    (signed headers content-type;host;x-sdk-date), hashes it to ``b25362e6...``, and signs the
    resulting string with the SK ``MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc`` into
    ``7be66680...``.  The request, the hash, the string to sign, the SK and the signature are
    the guide's; the canonical request is written out here from the guide's rules and hashes
    to the guide's value.  The access key is ours: it does not enter the signature.
    """
    canonical = "\n".join(
        [
            "GET",
            "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/",
            "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
            "content-type:application/json",
            "host:service.region.example.com",
            "x-sdk-date:20191115T033655Z",
            "",
            "content-type;host;x-sdk-date",
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    signature = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    ak = "DOCEXAMPLEACCESSKEY0"
    return {
        "name": "doc-list-vpcs",
        "source": " ".join(DOC_PAGES),
        "request": {
            "method": "GET",
            "host": "service.region.example.com",
            "path": "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            "query": "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
            "headers": {
                "Content-Type": "application/json",
                "X-Sdk-Date": "20191115T033655Z",
                "Authorization": f"SDK-HMAC-SHA256 Access={ak}, "
                f"SignedHeaders=content-type;host;x-sdk-date, Signature={signature}",
            },
            "body": "",
        },
        "credential": {
            "access_key": ak,
            "secret_key": "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
            "session_token": None,
        },
        "sdk_date": "20191115T033655Z",
        "expected": {
            "canonical_request": canonical,
            "canonical_request_sha256": (
                "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
            ),
            "string_to_sign": "SDK-HMAC-SHA256\n20191115T033655Z\n"
            "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a",
            "signature": signature,
        },
    }


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", [doc_case()])):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
