"""Regenerate the JD Cloud known-answer vectors with the vendor SDKs' own signers.

Run from the repository root: ``python tests/vectors/jingdong/generate.py``.

* ``JDCLOUD2-HMAC-SHA256`` cases are signed by ``jdcloud-apim-sdk-core``'s
  ``jdcloud_apim_sdk.core.signer.Signer`` (the algorithm of ``jdcloud-sdk`` before it moved to
  JDCLOUD3, and of the API-gateway SDK);
* ``JDCLOUD3-HMAC-SHA256`` cases by ``jdcloud-sdk``'s ``jdcloud_sdk.core.signer.Signer``.

Each SDK's clock and ``uuid4`` are pinned so the output is reproducible.  ``doc.json`` holds
the example request of JD Cloud's signing documentation; the page publishes no signature, so
its expected value is the SDK's for that request, with example credentials (the page gives
none).
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from jdcloud_apim_sdk.core.credential import Credential as V2Credential
from jdcloud_apim_sdk.core.logger import Logger as V2Logger
from jdcloud_apim_sdk.core.signer import Signer as V2Signer
from jdcloud_sdk.core.credential import Credential as V3Credential
from jdcloud_sdk.core.logger import Logger as V3Logger
from jdcloud_sdk.core.signer import Signer as V3Signer

HERE = Path(__file__).parent
V2 = f"jdcloud-apim-sdk-core {version('jdcloud-apim-sdk-core')} jdcloud_apim_sdk.core.signer"
V3 = f"jdcloud-sdk {version('jdcloud-sdk')} jdcloud_sdk.core.signer"
DOC_URL = "https://docs.jdcloud.com/cn/common-declaration/api/authorization-rules"
AK, SK = "JDC_PROXY0123456789ABCDEF", "c2VjcmV0LWpkY2xvdWQta2V5LTAx"


def case(
    name: str,
    algorithm: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: str = "",
    region: str = "cn-north-1",
    service: str = "vm",
    x_date: str = "20240102T030405Z",
    nonce: str = "5b0d1c6e-0000-4000-8000-000000000001",
    ak: str = AK,
    sk: str = SK,
) -> dict[str, Any]:
    sent = {"Content-Type": "application/json", **(headers or {})}
    when = _dt.datetime.strptime(x_date, "%Y%m%dT%H%M%SZ")
    cls: Any
    if algorithm == "JDCLOUD2-HMAC-SHA256":
        cls, signer, cred, source = V2Signer, V2Signer(V2Logger(0)), V2Credential(ak, sk), V2
    else:
        cls, signer, cred, source = V3Signer, V3Signer(V3Logger(0)), V3Credential(ak, sk), V3
    token = sent.get("x-jdcloud-security-token", "")
    with (
        mock.patch.object(cls, "_Signer__now", lambda self: when),
        mock.patch.object(uuid, "uuid4", lambda: nonce),
    ):
        signer.sign(method, service, region, url, sent, body, cred, token)
    parts = urlsplit(url)
    return {
        "name": name,
        "source": source,
        "algorithm": algorithm,
        "request": {
            "method": method,
            "host": parts.netloc,
            "path": parts.path,
            "query": parts.query,
            "headers": sent,
            "body": body,
        },
        "credential": {"access_key": ak, "secret_key": sk},
        "region": region,
        "service": service,
        "x_date": x_date,
        "nonce": nonce,
        "expected": {"authorization": sent["Authorization"]},
    }


V2A, V3A = "JDCLOUD2-HMAC-SHA256", "JDCLOUD3-HMAC-SHA256"
VM = "https://vm.jdcloud-api.com/v1/regions/cn-north-1"


def sdk_cases() -> list[dict[str, Any]]:
    return [
        case(
            "v2-get-unsorted-query",
            V2A,
            "GET",
            f"{VM}/instances?pageNumber=1&pageSize=10&filters.1.name=instanceId"
            "&filters.1.values.1=i-abc",
        ),
        case(
            "v2-post-action-token",
            V2A,
            "POST",
            f"{VM}/instances/i-abc:startInstance",
            headers={"x-jdcloud-security-token": "STS-session-token-example"},
            body='{"regionId": "cn-north-1", "instanceId": "i-abc"}',
        ),
        case(
            "v2-port-and-encoded-query",
            V2A,
            "GET",
            "http://127.0.0.1:8000/v1/regions/cn-north-1/disks?name=a%20b&tag=%E4%B8%AD",
            service="disk",
            region="cn-east-2",
        ),
        case(
            "v2-default-port-dropped",
            V2A,
            "DELETE",
            "https://vpc.jdcloud-api.com:443/v1/regions/cn-north-1/vpcs/vpc-1",
            service="vpc",
            x_date="20231231T235959Z",
        ),
        case(
            "v3-get-query",
            V3A,
            "GET",
            f"{VM}/instances?pageSize=10&filters.1.name=name&filters.1.values.1=a+b%2Fc~d",
        ),
        case(
            "v3-post-action",
            V3A,
            "POST",
            f"{VM}/instances/i-abc:stopInstance",
            body='{"instanceId": "i-abc", "note": "ünï"}',
        ),
        case(
            "v3-special-path",
            V3A,
            "GET",
            "https://oss.jdcloud-api.com/v1/regions/cn-north-1/buckets/b%20x/objects/%E4%B8%AD",
            service="oss",
            x_date="20250607T080910Z",
        ),
        case(
            "v3-token",
            V3A,
            "PUT",
            f"{VM}/instances/i-abc/description",
            headers={"x-jdcloud-security-token": "STS-session-token-example"},
            body='{"description": "d"}',
            ak="JDC_OTHER",
            sk="another/secret+key==",
        ),
    ]


def doc_case() -> dict[str, Any]:
    url = (
        "https://vm.jdcloud-api.com/v1/regions/cn-north-1/metrics/cpu_util/metricData"
        "?serviceCode=vm&startTime=2018-04-04T06:01:46Z"
    )
    c = case(
        "doc-vm-metric-data",
        V2A,
        "GET",
        url,
        x_date="20180404T061302Z",
        nonce="ed558a3b-9808-4edb-8597-187bda63a4f2",
    )
    c["source"] = f"{DOC_URL} (request, date and nonce); {V2} (signature, example credentials)"
    return c


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", [doc_case()])):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
