"""Regenerate ``sigv2.json``: S3 Signature Version 2 requests, from the S3 documentation's
examples and from botocore's own HmacV1 signers.

Run from the repository root: ``python tests/vectors/aws/generate_sigv2.py``.  botocore's
clock is pinned per case so the output is reproducible; the tests verify every signature with
keybroker's code and re-run :func:`build` to notice a change in botocore.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = Path(__file__).parent
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//////////token+with/slashes=="
DOCS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html"

#: (name, method, host, path, query, headers, signature) from the S3 documentation
DOC_CASES: list[tuple[str, str, str, str, str, list[tuple[str, str]], str]] = [
    (
        "docs object GET",
        "GET",
        "awsexamplebucket1.s3.us-west-1.amazonaws.com",
        "/photos/puppy.jpg",
        "",
        [("Date", "Tue, 27 Mar 2007 19:36:42 +0000")],
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
    ),
    (
        "docs object PUT",
        "PUT",
        "awsexamplebucket1.s3.us-west-1.amazonaws.com",
        "/photos/puppy.jpg",
        "",
        [
            ("Content-Type", "image/jpeg"),
            ("Content-Length", "94328"),
            ("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ],
        "iqRzw+ileNPu1fhspnRs8nOjjIA=",
    ),
    (
        "docs list",
        "GET",
        "awsexamplebucket1.s3.us-west-1.amazonaws.com",
        "/",
        "prefix=photos&max-keys=50&marker=puppy",
        [("User-Agent", "Mozilla/5.0"), ("Date", "Tue, 27 Mar 2007 19:42:41 +0000")],
        "m0WP8eCtspQl5Ahe6L1SozdX9YA=",
    ),
    (
        "docs fetch acl",
        "GET",
        "awsexamplebucket1.s3.us-west-1.amazonaws.com",
        "/",
        "acl",
        [("Date", "Tue, 27 Mar 2007 19:44:46 +0000")],
        "82ZHiFIjc+WbcwFKGUVEQspPn+0=",
    ),
    (
        "docs delete with x-amz-date",
        "DELETE",
        "s3.us-west-1.amazonaws.com",
        "/awsexamplebucket1/photos/puppy.jpg",
        "",
        [
            ("User-Agent", "dotnet"),
            ("Date", "Tue, 27 Mar 2007 21:20:27 +0000"),
            ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
        ],
        "XbyTlbQdu9Xw5o8P4iMwPktxQd8=",
    ),
    (
        "docs list all buckets",
        "GET",
        "s3.us-west-1.amazonaws.com",
        "/",
        "",
        [("Date", "Wed, 28 Mar 2007 01:29:59 +0000")],
        "qGdzdERIC03wnaRNKh6OqZehG9s=",
    ),
    (
        "docs query string",
        "GET",
        "johnsmith.s3.amazonaws.com",
        "/photos/puppy.jpg",
        "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620"
        "&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D",
        [],
        "NpgCjnDzrM+WFzoENXmpNDUsSn8=",
    ),
]

#: (name, signer, method, url, headers, with token, epoch seconds)
BOTO_CASES: list[tuple[str, str, str, str, dict[str, str], bool, int]] = [
    (
        "boto get object",
        "HmacV1Auth",
        "GET",
        "https://s3.amazonaws.com/bucket/dir/a%20b.txt",
        {},
        False,
        1704067200,
    ),
    (
        "boto put with metadata",
        "HmacV1Auth",
        "PUT",
        "https://bucket.s3.eu-west-1.amazonaws.com/k%E2%9C%93.bin",
        {
            "Content-Type": "application/octet-stream",
            "Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww==",
            "x-amz-meta-Note": " spaced  value ",
            "x-amz-acl": "private",
        },
        False,
        1718452800,
    ),
    (
        "boto multipart part",
        "HmacV1Auth",
        "PUT",
        "https://s3.us-west-2.amazonaws.com/bucket/big?partNumber=3&uploadId=a%2Fb%3Dc",
        {},
        False,
        1720000000,
    ),
    (
        "boto delete versioned with token",
        "HmacV1Auth",
        "DELETE",
        "https://s3.amazonaws.com/bucket/k?versionId=3%2F4",
        {},
        True,
        1730000000,
    ),
    (
        "boto list with response overrides",
        "HmacV1Auth",
        "GET",
        "https://s3.amazonaws.com/bucket/k?response-content-type=text%2Fplain&list-type=2&acl",
        {},
        False,
        1735000000,
    ),
    (
        "boto presigned get",
        "HmacV1QueryAuth",
        "GET",
        "https://s3.amazonaws.com/bucket/photos/p%C3%BCppy.jpg",
        {},
        False,
        1704067200,
    ),
    (
        "boto presigned put with token",
        "HmacV1QueryAuth",
        "PUT",
        "https://bucket.s3.amazonaws.com/upload.txt",
        {},
        True,
        1718452800,
    ),
    (
        "boto presigned with sub-resource",
        "HmacV1QueryAuth",
        "GET",
        "https://s3.eu-central-1.amazonaws.com/bucket/k?versionId=v1&response-expires=0",
        {},
        False,
        1720000000,
    ),
]


def _boto_case(
    name: str, signer: str, method: str, url: str, headers: dict[str, str], token: bool, t: int
) -> dict[str, Any]:
    creds = Credentials(ACCESS_KEY, SECRET_KEY, TOKEN if token else None)
    req = AWSRequest(method=method, url=url, headers=dict(headers))
    host = urlsplit(url).netloc
    if ".s3." in host and not host.startswith("s3."):  # virtual-hosted: botocore's auth_path
        req.auth_path = "/" + host.split(".s3.")[0] + urlsplit(url).path
    date = botoauth.formatdate(t, usegmt=True)
    with (
        mock.patch.object(botoauth, "formatdate", lambda usegmt=True: date),
        mock.patch.object(botoauth.time, "time", lambda: float(t)),
    ):
        if signer == "HmacV1Auth":
            botoauth.HmacV1Auth(creds).add_auth(req)
        else:
            botoauth.HmacV1QueryAuth(creds, expires=3600).add_auth(req)
    parts = urlsplit(req.url)
    # a presigned URL travels alone: the headers botocore set while signing stay behind
    sent = list(headers.items()) if signer != "HmacV1Auth" else list(req.headers.items())
    return {
        "name": name,
        "source": f"botocore {version('botocore')} botocore.auth.{signer}",
        "method": method,
        "host": parts.netloc,
        "path": parts.path,
        "query": parts.query,
        "headers": sent,
        "token": TOKEN if token else None,
        "now": t,
    }


def build() -> dict[str, Any]:
    docs = [
        {
            "name": name,
            "source": DOCS,
            "method": method,
            "host": host,
            "path": path,
            "query": query,
            "headers": [
                *headers,
                *([] if "Signature=" in query else [("Authorization", f"AWS {ACCESS_KEY}:{sig}")]),
            ],
            "token": None,
            "now": None,
        }
        for name, method, host, path, query, headers, sig in DOC_CASES
    ]
    return {
        "credential": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
        "cases": docs + [_boto_case(*c) for c in BOTO_CASES],
    }


if __name__ == "__main__":
    out = HERE / "sigv2.json"
    out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {out}")
