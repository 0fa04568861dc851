"""Regenerate the Baidu AI Cloud known-answer vectors with the vendor SDK's own signer.

Run from the repository root: ``python tests/vectors/baidu/generate.py``.  Every case in
``sdk.json`` is signed by ``baidubce.auth.bce_v1_signer.sign`` (which takes the signing time
as an argument, so the output is reproducible), or by ``BosClient.generate_pre_signed_url``
for the presigned-URL form.  ``doc.json`` holds the worked example of the public
documentation, with its URLs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from baidubce import utils
from baidubce.auth import bce_v1_signer
from baidubce.auth.bce_credentials import BceCredentials
from baidubce.bce_client_configuration import BceClientConfiguration
from baidubce.services.bos.bos_client import BosClient

HERE = Path(__file__).parent
SDK = f"bce-python-sdk {version('bce-python-sdk')}"
DOC_URLS = (
    "https://intl.cloud.baidu.com/doc/Reference/s/Gjwvz1xez-en",
    "https://intl.cloud.baidu.com/doc/Reference/s/wjwvz1xt2-en",
)

AK, SK = "bceproxyaccesskeyexample00000001", "bceproxysecretkeyexample00000001"


def _epoch(timestamp: str) -> int:
    return int(datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def header_case(
    name: str,
    *,
    method: str,
    host: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    body: str,
    timestamp: str,
    expiration: int = 1800,
    headers_to_sign: list[str] | None = None,
    ak: str = AK,
    sk: str = SK,
    token: str | None = None,
) -> dict[str, Any]:
    """Sign as ``baidubce.http.bce_http_client.send_request`` does: Host, Content-Length and
    x-bce-date are set, the path is encoded with slashes kept, the query is the SDK's own."""
    raw = {"host": host, "content-length": str(len(body.encode())),
           "x-bce-date": timestamp, **headers}  # fmt: skip
    if token:
        raw["x-bce-security-token"] = token
    wire_path = utils.normalize_string(path, False)
    auth = bce_v1_signer.sign(
        BceCredentials(ak.encode(), sk.encode()),
        method.encode(),
        wire_path,
        {k.encode(): v.encode() for k, v in raw.items()},
        {k.encode(): v.encode() for k, v in params.items()},
        _epoch(timestamp),
        expiration,
        [h.encode() for h in headers_to_sign] if headers_to_sign else None,
    )
    query = utils.get_canonical_querystring(
        {k.encode(): v.encode() for k, v in params.items()}, False
    )
    return {
        "name": name,
        "source": f"{SDK} baidubce.auth.bce_v1_signer.sign",
        "form": "header",
        "request": {
            "method": method,
            "host": host,
            "path": _text(wire_path),
            "query": _text(query),
            "headers": {**raw, "Authorization": _text(auth)},
            "body": body,
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": token},
        "timestamp": timestamp,
        "expiration": expiration,
        "expected": {"authorization": _text(auth)},
    }


def presigned_case(
    name: str, *, bucket: str, key: str, timestamp: str, expiration: int, token: str | None
) -> dict[str, Any]:
    config = BceClientConfiguration(
        credentials=BceCredentials(AK.encode(), SK.encode()),
        endpoint=b"bj.bcebos.com",
        security_token=token.encode() if token else None,
    )
    url = _text(
        BosClient(config).generate_pre_signed_url(
            bucket, key, timestamp=_epoch(timestamp), expiration_in_seconds=expiration
        )
    )
    parts = urlsplit(url)
    auth = unquote(dict(p.split("=", 1) for p in parts.query.split("&"))["authorization"])
    return {
        "name": name,
        "source": f"{SDK} BosClient.generate_pre_signed_url",
        "form": "query",
        "request": {
            "method": "GET",
            "host": parts.netloc,
            "path": parts.path,
            "query": parts.query,
            "headers": {},
            "body": "",
        },
        "credential": {"access_key": AK, "secret_key": SK, "session_token": token},
        "timestamp": timestamp,
        "expiration": expiration,
        "expected": {"authorization_param": auth},
    }


JSON = "application/json; charset=utf-8"


def sdk_cases() -> list[dict[str, Any]]:
    return [
        header_case(
            "get-default-headers",
            method="GET",
            host="bcc.bj.baidubce.com",
            path="/v2/instance",
            params={"maxKeys": "10", "marker": "i-a b", "zoneName": "cn-bj-a"},
            headers={"content-type": JSON},
            body="",
            timestamp="2024-01-01T00:00:00Z",
        ),
        header_case(
            "post-json-explicit-headers",
            method="POST",
            host="bcc.gz.baidubce.com",
            path="/v2/instance",
            params={"clientToken": "tok-1"},
            headers={"content-type": JSON, "x-bce-request-id": "req-123"},
            body='{"instanceType": "N3", "name": "v\u00e9m"}',
            timestamp="2024-02-29T23:59:59Z",
            headers_to_sign=["host", "x-bce-date"],
        ),
        header_case(
            "session-token-and-expiration",
            method="DELETE",
            host="bcc.bj.baidubce.com",
            path="/v2/instance/i-abc123",
            params={},
            headers={"content-type": JSON},
            body="",
            timestamp="2024-06-15T08:18:05Z",
            expiration=3600,
            token="stsSessionTokenExample+/=",
        ),
        header_case(
            "port-and-encoded-path-and-query",
            method="PUT",
            host="127.0.0.1:8080",
            path="/v1/bucket/dir name/\u6587\u4ef6*.txt",
            params={"a": "b/c", "Z": "1", "empty": "", "x": "a:b~c"},
            headers={"content-type": "text/plain", "content-md5": "ClJzBZf7T/oB/BF9nnHjqQ=="},
            body="Example",
            timestamp="2024-05-01T01:02:03Z",
        ),
        header_case(
            "other-credential",
            method="POST",
            host="bos.su.baidubce.com",
            path="/json-api/v1/x",
            params={"action": ""},
            headers={"content-type": JSON, "x-bce-meta-Note": "Hello  World"},
            body="{}",
            timestamp="2025-07-07T07:07:07Z",
            ak="bceotheraccesskey000000000000002",
            sk="another/secret+key==",
        ),
        presigned_case(
            "presigned-get",
            bucket="mybucket",
            key="photos/a b.jpg",
            timestamp="2024-01-02T03:04:05Z",
            expiration=600,
            token=None,
        ),
        presigned_case(
            "presigned-get-with-token",
            bucket="mybucket",
            key="report.pdf",
            timestamp="2024-01-02T03:04:05Z",
            expiration=1800,
            token="stsTokenInQuery",
        ),
    ]


def doc_case() -> dict[str, Any]:
    """The example of Baidu's "Include the Authentication String into the Header" page.

    The request and its Authorization are copied from the page (the AK is the page's
    ``aaa...``); the SK ``bbb...`` is the one of the companion "Sample-Code" page.  The page
    does not publish the body (its Content-MD5 matches none we know), so the test checks the
    signature, not the MD5.
    """
    auth = (
        "bce-auth-v1/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/2015-04-27T08:23:49Z/1800//"
        "d74a04362e6a848f5b39b15421cb449427f419c95a480fd6b8cf9fc783e2999e"
    )
    return {
        "name": "doc-bos-upload-part",
        "source": " ".join(DOC_URLS),
        "form": "header",
        "request": {
            "method": "PUT",
            "host": "bj.bcebos.com",
            "path": "/v1/test/myfolder/readme.txt",
            "query": "partNumber=9&uploadId=a44cc9bab11cbd156984767aad637851",
            "headers": {
                "Authorization": auth,
                "Host": "bj.bcebos.com",
                "Date": "Mon, 27 Apr 2015 16:23:49 +0800",
                "Content-Type": "text/plain",
                "Content-Length": "8",
                "Content-Md5": "NFzcPqhviddjRNnSOGo4rw==",
                "x-bce-date": "2015-04-27T08:23:49Z",
            },
            "body": None,
        },
        "credential": {
            "access_key": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "secret_key": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "session_token": None,
        },
        "timestamp": "2015-04-27T08:23:49Z",
        "expiration": 1800,
        "expected": {"authorization": auth},
    }


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", [doc_case()])):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
