"""Regenerate the Volcengine known-answer vectors with the vendor SDK's own signer.

Run from the repository root: ``python tests/vectors/volcengine/generate.py``.  Every case is
signed by ``volcenginesdkcore.signv4.SignerV4`` (the SDK's clock is pinned to the case's date
so the output is reproducible); the tests then recompute each signature with keybroker's code.
"""

from __future__ import annotations

import datetime as _dt
import json
import types
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from volcenginesdkcore import signv4
from volcenginesdkcore.signv4 import SignerV4

HERE = Path(__file__).parent
SDK = f"volcenginesdk-core {version('volcenginesdk-core')} signv4.SignerV4"
DOC_URL = "https://www.volcengine.com/docs/6408/78948"


@contextmanager
def sdk_clock(x_date: str) -> Iterator[None]:
    """Pin the SDK's ``datetime.datetime.utcnow()`` to ``x_date`` (YYYYMMDDTHHMMSSZ)."""
    fixed = _dt.datetime.strptime(x_date, "%Y%m%dT%H%M%SZ")

    class _Clock(_dt.datetime):
        @classmethod
        def utcnow(cls) -> _dt.datetime:
            return fixed

    shim = types.SimpleNamespace(datetime=_Clock)
    saved = signv4.datetime
    signv4.datetime = shim
    try:
        yield
    finally:
        signv4.datetime = saved


def header_case(
    name: str,
    *,
    method: str,
    host: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: str,
    ak: str,
    sk: str,
    region: str,
    service: str,
    x_date: str,
    token: str | None = None,
    path: str = "/",
) -> dict[str, Any]:
    signed = {"Host": host, **headers}
    with sdk_clock(x_date):
        SignerV4.sign(path, method, signed, body, None, query, ak, sk, region, service, token)
    return {
        "name": name,
        "source": SDK,
        "form": "header",
        "request": {
            "method": method,
            "host": host,
            "path": path,
            "query": urlencode(query),
            "headers": signed,
            "body": body,
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": token},
        "region": region,
        "service": service,
        "x_date": x_date,
        "expected": {"authorization": signed["Authorization"]},
    }


def query_case(
    name: str,
    *,
    method: str,
    host: str,
    query: list[tuple[str, str]],
    ak: str,
    sk: str,
    region: str,
    service: str,
    x_date: str,
    token: str | None = None,
    sign_host: bool = True,
) -> dict[str, Any]:
    with sdk_clock(x_date):
        signed = SignerV4.sign_url(
            "/", method, query, ak, sk, region, service, token, host if sign_host else None
        )
    signature = dict(p.split("=", 1) for p in signed.split("&"))["X-Signature"]
    return {
        "name": name,
        "source": f"{SDK}.sign_url",
        "form": "query",
        "request": {
            "method": method,
            "host": host,
            "path": "/",
            "query": signed,
            "headers": {},
            "body": "",
        },
        "credential": {"access_key": ak, "secret_key": sk, "session_token": token},
        "region": region,
        "service": service,
        "x_date": x_date,
        "expected": {"signature": signature},
    }


FORM = "application/x-www-form-urlencoded; charset=utf-8"
JSON = "application/json"


def sdk_cases() -> list[dict[str, Any]]:
    common = {"ak": "AKLTproxyEXAMPLE", "sk": "c2VjcmV0LXByb3h5LWtleQ==", "region": "cn-beijing"}
    return [
        header_case(
            "get-list-users",
            method="GET",
            host="iam.volcengineapi.com",
            query=[("Action", "ListUsers"), ("Version", "2018-01-01"), ("Limit", "10")],
            headers={"Content-Type": FORM},
            body="",
            service="iam",
            x_date="20240101T000000Z",
            **common,
        ),
        header_case(
            "post-json-with-session-token",
            method="POST",
            host="open.volcengineapi.com",
            query=[("Action", "RunInstances"), ("Version", "2020-04-01")],
            headers={"Content-Type": JSON},
            body='{"ImageId": "image-1", "Count": 2, "Tags": [{"Key": "k", "Value": "v"}]}',
            service="ecs",
            x_date="20240229T235959Z",
            token="STSsessionTOKENexample",
            **common,
        ),
        header_case(
            "query-needs-encoding",
            method="GET",
            host="open.volcengineapi.com",
            query=[
                ("Version", "2020-04-01"),
                ("Action", "DescribeThings"),
                ("Filter.1.Name", "a b+c/d~e*f"),
                ("Zeta", "中文"),
                ("empty", ""),
                ("a_b", "x&y=z"),
            ],
            headers={"Content-Type": FORM},
            body="",
            service="vpc",
            x_date="20231231T120000Z",
            **common,
        ),
        header_case(
            "host-default-port-dropped",
            method="POST",
            host="open.volcengineapi.com:443",
            query=[("Action", "ListUsers"), ("Version", "2018-01-01")],
            headers={"Content-Type": JSON},
            body="{}",
            service="iam",
            x_date="20240615T081805Z",
            **common,
        ),
        header_case(
            "host-other-port-kept",
            method="POST",
            host="127.0.0.1:8443",
            query=[("Action", "ListUsers"), ("Version", "2018-01-01")],
            headers={"Content-Type": JSON},
            body='{"Limit": 1}',
            service="iam",
            x_date="20240615T081805Z",
            **common,
        ),
        header_case(
            "extra-x-headers-signed",
            method="POST",
            host="open.volcengineapi.com",
            query=[("Action", "CreateVpc"), ("Version", "2020-04-01")],
            headers={
                "Content-Type": JSON,
                "X-Sdk-Invocation-Id": "3f1c2d3e-0000-4000-8000-000000000000",
                "X-Sdk-Request": "attempt=1; max=4",
            },
            body='{"VpcName": "n\\u00e4me"}',
            service="vpc",
            x_date="20240501T010203Z",
            **common,
        ),
        header_case(
            "put-unicode-body-other-region",
            method="PUT",
            host="open.volcengineapi.com",
            query=[("Action", "Update"), ("Version", "2021-01-01")],
            headers={"Content-Type": "text/plain; charset=utf-8"},
            body="héllo wörld ✓",
            service="kms",
            x_date="20250707T070707Z",
            ak="AKLTotherEXAMPLE",
            sk="another/secret+key==",
            region="ap-southeast-1",
        ),
        query_case(
            "presigned-host-and-token",
            method="GET",
            host="open.volcengineapi.com",
            query=[("Action", "ListUsers"), ("Version", "2018-01-01"), ("Limit", "5")],
            service="iam",
            x_date="20240101T000000Z",
            token="STSsessionTOKENexample",
            **common,
        ),
        query_case(
            "presigned-no-host",
            method="GET",
            host="open.volcengineapi.com",
            query=[("Action", "ListUsers"), ("Version", "2018-01-01"), ("Name", "a b")],
            service="iam",
            x_date="20240102T030405Z",
            sign_host=False,
            **common,
        ),
    ]


def doc_case() -> dict[str, Any]:
    """The worked example of the public signing documentation.

    The page shows the request, the canonical request and the credentials, but its final
    signature is not reproduced here: ``expected.authorization`` is what the SDK computes for
    exactly that canonical request.  Note the page signs ``host:open.volcengineapi.com`` while
    its request line says ``iam.volcengineapi.com``; the canonical request is what counts.
    """
    case = header_case(
        "doc-iam-list-users",
        method="GET",
        host="open.volcengineapi.com",
        query=[
            ("Action", "ListUsers"),
            ("Version", "2020-04-01"),
            ("Limit", "10"),
            ("Offset", "0"),
        ],
        headers={"Content-Type": FORM},
        body="",
        ak="AKLTMjI2ODVlYzI3ZGY1NGU4ZjhjYWRjMTlmNTM5OTZkYzE",
        sk="TnpCak5XWXpZV1U0WkRaaE5ERmxaR0ZpTmpjeVkyUXlZek0wTWpJMU1qWQ==",
        region="cn-beijing",
        service="iam",
        x_date="20200401T081805Z",
    )
    case["source"] = f"{DOC_URL} (request and canonical request); {SDK} (signature)"
    case["expected"]["canonical_request"] = "\n".join(
        [
            "GET",
            "/",
            "Action=ListUsers&Limit=10&Offset=0&Version=2020-04-01",
            "content-type:" + FORM,
            "host:open.volcengineapi.com",
            "x-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "x-date:20200401T081805Z",
            "",
            "content-type;host;x-content-sha256;x-date",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ]
    )
    return case


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", [doc_case()])):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
