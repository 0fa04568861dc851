"""Regenerate ``botocore.json``: requests signed by botocore's own SigV4 signers.

Run from the repository root: ``python tests/vectors/aws/generate.py``.  botocore's clock is
pinned to each case's date so the output is reproducible; the tests recompute every signature
with keybroker's code, and also re-run :func:`build` to notice a change in botocore.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = Path(__file__).parent
SOURCE = f"botocore {version('botocore')} (botocore.auth SigV4Auth, S3SigV4Auth, *QueryAuth)"
ACCESS_KEY = "AKIAVECTORPROXY0001"
SECRET_KEY = "vector/secret+key=for/botocore/0123456789"
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////token+with/slashes=="

SIGNERS = {
    "SigV4Auth": botoauth.SigV4Auth,
    "S3SigV4Auth": botoauth.S3SigV4Auth,
    "SigV4QueryAuth": botoauth.SigV4QueryAuth,
    "S3SigV4QueryAuth": botoauth.S3SigV4QueryAuth,
}

#: (name, signer, service, region, method, url, headers, body, with token, timestamp)
CASES: list[tuple[str, str, str, str, str, str, dict[str, str], str, bool, str]] = [
    ("kms-encrypt-json", "SigV4Auth", "kms", "eu-west-1", "POST",
     "https://kms.eu-west-1.amazonaws.com/",
     {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Encrypt"},
     '{"KeyId":"alias/k","Plaintext":"aGVsbG8="}', False, "20240101T000000Z"),
    ("sts-query-token", "SigV4Auth", "sts", "us-east-1", "GET",
     "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
     {}, "", True, "20240229T235959Z"),
    ("iam-form-post", "SigV4Auth", "iam", "us-east-1", "POST",
     "https://iam.amazonaws.com/",
     {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
     "Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fdivision_abc%2F", False,
     "20240615T120000Z"),
    ("apigw-path-needs-double-encoding", "SigV4Auth", "execute-api", "ap-southeast-2", "GET",
     "https://abc123.execute-api.ap-southeast-2.amazonaws.com/prod/items/a%20b/%E2%9C%93/./x/../y",
     {"X-Custom": "  spaced   value  "}, "", False, "20240301T101010Z"),
    ("s3-put-unicode-key", "S3SigV4Auth", "s3", "eu-central-1", "PUT",
     "https://bucket.s3.eu-central-1.amazonaws.com/dir/%E2%9C%93%20file%2Bplus.txt",
     {"Content-Type": "text/plain", "x-amz-meta-note": "a  b"}, "hello, S3", False,
     "20241231T235959Z"),
    ("s3-get-query-and-token", "S3SigV4Auth", "s3", "us-west-2", "GET",
     "https://s3.us-west-2.amazonaws.com/bucket/a//b/./c?list-type=2&prefix=x%2Fy&delimiter=%2F",
     {"Range": "bytes=0-99"}, "", True, "20240704T050607Z"),
    ("s3-date-header", "S3SigV4Auth", "s3", "us-east-1", "DELETE",
     "https://s3.amazonaws.com/bucket/key",
     {"Date": "placeholder"}, "", False, "20230909T090909Z"),
    ("sts-presigned", "SigV4QueryAuth", "sts", "ap-northeast-1", "GET",
     "https://sts.ap-northeast-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
     {}, "", False, "20240110T111213Z"),
    ("s3-presigned-token", "S3SigV4QueryAuth", "s3", "cn-north-1", "GET",
     "https://bucket.s3.cn-north-1.amazonaws.com.cn/photos/2024/cat%20%281%29.jpg"
     "?response-content-type=image%2Fjpeg",
     {}, "", True, "20240808T080808Z"),
]  # fmt: skip


@contextmanager
def pinned_clock(timestamp: str) -> Iterator[None]:
    fixed = _dt.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ")
    with mock.patch.object(botoauth, "get_current_datetime", lambda: fixed):
        yield


def sign_case(
    case: tuple[str, str, str, str, str, str, dict[str, str], str, bool, str],
) -> dict[str, Any]:
    name, signer, service, region, method, url, headers, body, token, timestamp = case
    creds = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN if token else None)
    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body.encode())
    cls = SIGNERS[signer]
    auth = cls(creds, service, region, 900) if "Query" in signer else cls(creds, service, region)
    with pinned_clock(timestamp):
        auth.add_auth(req)
    parts = urlsplit(req.url)
    return {
        "name": name,
        "signer": signer,
        "service": service,
        "region": region,
        "timestamp": timestamp,
        "token": TOKEN if token else None,
        "method": method,
        "host": parts.netloc,
        "path": parts.path,
        "query": parts.query,
        "headers": [[k, v] for k, v in req.headers.items()],
        "body": body,
        "signature": _signature(req),
    }


def _signature(req: AWSRequest) -> str:
    if "Authorization" in req.headers:
        return str(req.headers["Authorization"]).rpartition("Signature=")[2]
    return req.url.rpartition("X-Amz-Signature=")[2]


def build() -> dict[str, Any]:
    return {
        "source": SOURCE,
        "credential": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
        "cases": [sign_case(c) for c in CASES],
    }


if __name__ == "__main__":
    out = HERE / "botocore.json"
    out.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
