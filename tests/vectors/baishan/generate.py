"""Regenerate the Baishan known-answer vectors.

Run from the repository root: ``python tests/vectors/baishan/generate.py``.  Baishan publishes
no SDK.  ``doc.json`` holds the two request samples of the public documentation (query token,
JSON-body token) and a few variants; ``expected`` is what an upstream must receive once the
proxy token is swapped for ``REAL_TOKEN``, computed with the standard library here (an
independent implementation: parse, replace, re-read), not with keybroker's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

HERE = Path(__file__).parent
DOC_URL = "https://portal.baishancloud.com/track/document/api/1/1065"
REAL_TOKEN = "real-token-0123456789abcdef"


def case(
    name: str,
    *,
    token: str,
    method: str,
    path: str,
    query: str = "",
    body: str = "",
    content_type: str = "",
    source: str = DOC_URL,
) -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    if body and content_type == "application/json":
        expected_body: Any = {**json.loads(body), "token": REAL_TOKEN}
    elif body:
        expected_body = [(k, REAL_TOKEN if k == "token" else v) for k, v in parse_qsl(body)]
    else:
        expected_body = None
    expected_query = [(k, REAL_TOKEN if k == "token" else v) for k, v in parse_qsl(query)]
    return {
        "name": name,
        "source": source,
        "request": {
            "method": method,
            "host": "cdn.api.baishan.com",
            "path": path,
            "query": query,
            "headers": headers,
            "body": body,
        },
        "credential": {"secret_key": token},
        "real_token": REAL_TOKEN,
        "expected": {"query": expected_query, "body": expected_body},
    }


def doc_cases() -> list[dict[str, Any]]:
    body = json.dumps({"config": ["origin", "referer", "cache_rule"], "token": "token",
                       "domains": "aa.qingcdn.com,bb.qingcdn.com"})  # fmt: skip
    return [
        case(
            "doc-sample-1-query",
            token="token",
            method="GET",
            path="/v2/domain/config",
            query="token=token&domains=www.test.com&config[]=referer&config[]=origin",
        ),
        case(
            "doc-sample-2-json-body",
            token="token",
            method="GET",
            path="/v2/domain/config",
            body=body,
            content_type="application/json",
        ),
        case(
            "form-body",
            token="proxy-TOKEN_1",
            method="POST",
            path="/v2/domain/config",
            body="domains=a.example&token=proxy-TOKEN_1",
            source="variant of " + DOC_URL,
            content_type="application/x-www-form-urlencoded",
        ),
        case(
            "percent-encoded-token",
            token="p+r/o=x~y",
            method="GET",
            path="/v2/stat/bandwidth",
            query="domains=a.example&token=p%2Br%2Fo%3Dx~y",
            source="variant of " + DOC_URL,
        ),
    ]


def main() -> None:
    text = json.dumps(doc_cases(), indent=2, ensure_ascii=False) + "\n"
    (HERE / "doc.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
