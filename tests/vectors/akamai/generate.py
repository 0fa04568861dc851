"""Regenerate the Akamai EdgeGrid known-answer vectors.

Run from the repository root: ``python tests/vectors/akamai/generate.py``.

* ``doc.json`` — Akamai's published EdgeGrid test suite (``testcases.json``/``testdata.json``,
  shipped inside ``edgegrid-python`` and shared by Akamai's EdgeGrid clients in every
  language), reshaped; the one case that only checks a client-side error is left out.
* ``sdk.json`` — requests signed by ``edgegrid-python``'s ``EdgeGridAuth`` with its default
  settings (no signed headers, ``max_body`` 131072), timestamp and nonce pinned.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import requests
from akamai.edgegrid import EdgeGridAuth, edgegrid

HERE = Path(__file__).parent
SDK = f"edgegrid-python {version('edgegrid-python')} EdgeGridAuth"
DOC_URL = (
    "https://github.com/akamai/AkamaiOPEN-edgegrid-python/blob/master/"
    "akamai/edgegrid/test/testcases.json"
)


def _published() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    test_dir = files("akamai.edgegrid") / "test"
    data = json.loads((test_dir / "testdata.json").read_text(encoding="utf-8"))
    cases = json.loads((test_dir / "testcases.json").read_text(encoding="utf-8"))
    return data, cases


def doc_cases() -> dict[str, Any]:
    data, cases = _published()
    host = urlsplit(data["base_url"]).netloc
    out = []
    for case in cases:
        if "failsWithMessage" in case:
            continue
        r = case["request"]
        headers = [[k, v] for h in r.get("headers", []) for k, v in h.items()]
        path, _, query = r["path"].partition("?")
        out.append(
            {
                "name": case["testName"],
                "request": {
                    "method": r["method"],
                    "scheme": "https",
                    "host": next((v for k, v in headers if k == "Host"), host),
                    "path": path,
                    "query": query,
                    "headers": [[k, v] for k, v in headers if k != "Host"]
                    + [["Authorization", case["expectedAuthorization"]]],
                    "body": r.get("data", ""),
                },
                "expected": {
                    "authorization": case["expectedAuthorization"],
                    "data_to_sign": case["expectedDataToSign"],
                },
            }
        )
    settings = {
        k: data[k]
        for k in (
            "client_token",
            "access_token",
            "client_secret",
            "max_body",
            "headers_to_sign",
            "timestamp",
            "nonce",
        )
    }
    return {"source": DOC_URL, "settings": settings, "cases": out}


def sdk_case(
    name: str, method: str, url: str, body: bytes, headers: dict[str, str], **cred: str
) -> dict[str, Any]:
    """One request signed by the SDK.  A body made of one repeated unit is stored as
    ``{"repeat": unit, "times": n}`` to keep the file small."""
    timestamp, nonce = "20240102T03:04:05+0000", f"nonce-{name}"
    auth = EdgeGridAuth(**cred)
    with (
        mock.patch.object(edgegrid, "eg_timestamp", return_value=timestamp),
        mock.patch.object(edgegrid, "new_nonce", return_value=nonce),
    ):
        prepared = requests.Request(method, url, data=body, headers=headers, auth=auth).prepare()
    parts = urlsplit(prepared.url)
    sent = [[k, v] for k, v in prepared.headers.items() if k.lower() != "content-length"]
    return {
        "name": name,
        "source": SDK,
        "request": {
            "method": method,
            "scheme": parts.scheme,
            "host": headers.get("Host", parts.netloc),
            "path": parts.path,
            "query": parts.query,
            "headers": sent,
            "body": _compact(body.decode("utf-8")),
        },
        "credential": cred,
        "timestamp": timestamp,
        "nonce": nonce,
        "expected": {"authorization": prepared.headers["Authorization"]},
    }


def _compact(body: str) -> str | dict[str, Any]:
    unit = body[:16]
    if len(body) > 1024 and unit * (len(body) // 16) == body:
        return {"repeat": unit, "times": len(body) // 16}
    return body


def sdk_cases() -> list[dict[str, Any]]:
    cred = {
        "client_token": "akab-client-token-example-0001",
        "access_token": "akab-access-token-example-0001",
        "client_secret": "c2VjcmV0LWNsaWVudC1zZWNyZXQtdmFsdWUtMDAxMg==",
    }
    host = "https://akab-example0001.luna.akamaiapis.net"
    return [
        sdk_case("get-groups", "GET", f"{host}/papi/v1/groups", b"", {}, **cred),
        sdk_case(
            "get-query",
            "GET",
            f"{host}/papi/v1/properties?contractId=ctr_1&groupId=grp 2",
            b"",
            {},
            **cred,
        ),
        sdk_case(
            "post-json",
            "POST",
            f"{host}/ccu/v3/invalidate/url/production",
            b'{"objects": ["https://www.example.com/a b"]}',
            {"Content-Type": "application/json"},
            **cred,
        ),
        sdk_case(
            "post-over-max-body",
            "POST",
            f"{host}/diagnostic-tools/v2/x",
            b"0123456789abcdef" * 8200,
            {"Content-Type": "text/plain"},
            **cred,
        ),
        sdk_case(
            "put-unsigned-body",
            "PUT",
            f"{host}/papi/v1/properties/prp_1/versions/2/rules",
            '{"rules": "ünï"}'.encode(),
            {"Content-Type": "application/json"},
            **cred,
        ),
        sdk_case(
            "path-params-and-port",
            "GET",
            "http://127.0.0.1:8080/a;b=c/d;e?x=1&y=%2F",
            b"",
            {},
            **cred,
        ),
    ]


def main() -> None:
    for filename, content in (("doc.json", doc_cases()), ("sdk.json", sdk_cases())):
        text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
