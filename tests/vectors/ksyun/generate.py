"""Regenerate the Kingsoft Cloud known-answer vectors.

Run from the repository root: ``python tests/vectors/ksyun/generate.py``.

``sdk.json`` — requests built by Kingsoft's Python SDK (``kingsoftcloud-sdk-python``, module
``ksyun``: ``CommonClient._build_req_inter`` and its ``ApiRequest`` URL rules), prepared by
``requests`` and signed by the SDK's signer, ``requests_aws4auth.AWS4Auth``, with
``X-Amz-Date`` fixed so the output is reproducible.

``doc.json`` — Kingsoft's public signing page (URL in the case) documents a signed request
(``kir`` service, ``GET /?Action=ClassifyTerrorismImage...``, ``X-Amz-Date:
20171129T100303Z``, ``SignedHeaders=host;x-amz-date``) but not the secret key behind its
signature, so that signature cannot be checked.  The case keeps the documented request and
scope, and its ``expected`` signature is what ``AWS4Auth`` computes for a stated example key.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests
from ksyun.common import credential
from ksyun.common.common_client import CommonClient
from ksyun.common.http.request import ApiRequest, RequestInternal
from ksyun.common.profile.client_profile import ClientProfile
from ksyun.common.profile.http_profile import HttpProfile

HERE = Path(__file__).parent
SDK = (
    f"kingsoftcloud-sdk-python {version('kingsoftcloud-sdk-python')} + "
    f"requests-aws4auth {version('requests-aws4auth')}"
)
DOC_URL = "https://docs.ksyun.com/documents/37587"


def sign_prepared(
    method: str, url: str, headers: dict[str, str], body: Any, auth: Any, x_date: str
) -> requests.PreparedRequest:
    """Prepare like ``requests.request`` does and sign with ``auth`` at ``x_date``."""
    headers = {**headers, "X-Amz-Date": x_date}
    prepared = requests.Request(method, url, headers=headers, data=body).prepare()
    auth.regenerate_signing_key(date=x_date[:8])
    signed: requests.PreparedRequest = auth(prepared)
    return signed


def sdk_case(
    name: str,
    *,
    method: str,
    action: str,
    params: dict[str, Any],
    x_date: str,
    service: str = "iam",
    region: str = "cn-beijing-6",
    json_body: bool = False,
    ak: str = "AKLTproxyEXAMPLE",
    sk: str = "proxy/Secret+Key==",
) -> dict[str, Any]:
    host = f"{service}.api.ksyun.com"
    http = HttpProfile(endpoint=host, reqMethod=method)
    client = CommonClient(service, "2015-11-01", credential.Credential(ak, sk), region,
                          profile=ClientProfile(httpProfile=http, language="en-US"))  # fmt: skip
    req = RequestInternal(host, method, "/")
    client._build_req_inter(action, params, req, {"IsPostJson": True} if json_body else None)
    api = ApiRequest(host)
    if method == "GET":
        url, body = api._build_url(api.host, req.uri, req.data), None
    else:
        url, body = api._build_url(api.host, req.uri, req.uri_params or None), req.data
    headers = {**req.header, "Host": host}
    signed = sign_prepared(method, url, headers, body, req.auth, x_date)
    raw = signed.body if isinstance(signed.body, bytes) else (signed.body or "").encode()
    path, _, query = signed.path_url.partition("?")
    return {
        "name": name,
        "source": SDK,
        "request": {
            "method": method,
            "host": host,
            "path": path,
            "query": query,
            "headers": {k: v for k, v in signed.headers.items() if k.lower() != "content-length"},
            "body": raw.decode(),
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": None},
        "region": region,
        "service": service,
        "x_date": x_date,
        "expected": {"authorization": signed.headers["Authorization"]},
    }


def sdk_cases() -> list[dict[str, Any]]:
    return [
        sdk_case("post-form-list-users", method="POST", action="ListUsers",
                 params={"MaxItems": 10, "Marker": "a b+c/ü"}, x_date="20240101T000000Z"),
        sdk_case("get-query-spaces", method="GET", action="ListUsers",
                 params={"MaxItems": 10, "Marker": "a b+c/ü~*"}, x_date="20240229T235959Z"),
        sdk_case("post-json-cdn", method="POST", action="GetCdnDomains",
                 params={"PageSize": 5, "Domains": ["a.example.com"]}, service="cdn",
                 json_body=True, x_date="20250707T070707Z"),
        sdk_case("get-kec-other-region", method="GET", action="DescribeInstances",
                 params={"InstanceId": ["i-1", "i-2"]}, service="kec", region="cn-shanghai-2",
                 x_date="20231231T120000Z", ak="AKLTotherEXAMPLE", sk="another-secret"),
    ]  # fmt: skip


def doc_case() -> dict[str, Any]:
    from requests_aws4auth import AWS4Auth

    ak, sk = "AKLTfERrGQtUQNiiirSQFW7BzQ", "example-secret-not-published"
    url = (
        "https://kir.api.ksyun.com/?Action=ClassifyTerrorismImage&Version=2017-11-07"
        "&image_url=https://ks3-cn-beijing.ksyun.com/imgdb/vision.jpg"
    )
    auth = AWS4Auth(ak, sk, "cn-beijing-6", "kir", include_hdrs=["host", "x-amz-date"])
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Host": "kir.api.ksyun.com"}
    signed = sign_prepared("GET", url, headers, None, auth, "20171129T100303Z")
    path, _, query = signed.path_url.partition("?")
    return {
        "name": "doc-kir-classify-image",
        "source": f"{DOC_URL} (request and scope; the page does not publish its secret key, "
        f"so the signature is {SDK}'s for the stated example key)",
        "request": {
            "method": "GET",
            "host": "kir.api.ksyun.com",
            "path": path,
            "query": query,
            "headers": dict(signed.headers.items()),
            "body": "",
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": None},
        "region": "cn-beijing-6",
        "service": "kir",
        "x_date": "20171129T100303Z",
        "expected": {
            "authorization": signed.headers["Authorization"],
            "published_authorization": "AWS4-HMAC-SHA256 Credential=AKLTfERrGQtUQNiiirSQFW7BzQ/"
            "20171129/cn-beijing-6/kir/aws4_request, SignedHeaders=host;x-amz-date, "
            "Signature=dd6a401930a04a78c1c1d374bd63f89a960355aef346d70b4b7d185c48a2ffe9",
        },
    }


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", [doc_case()])):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
