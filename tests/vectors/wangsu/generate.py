"""Regenerate the Wangsu known-answer vectors.

Run from the repository root: ``python tests/vectors/wangsu/generate.py``.

* ``sdk.json`` — the AK/SK scheme (``CNC-HMAC-SHA256``), signed by ``wangsu-sdk-python``'s own
  ``AkSkAuth.get_auth_and_set_headers`` with its clock pinned to each case's timestamp.
* ``reference.json`` — the API-key (Basic) scheme.  No installable Python package signs it
  (see ``tests/signers/wangsu_upstream.py``), so these are produced by the independent
  implementation written from the public documentation in that module, at fixed dates.
* ``doc.json`` — what the documentation publishes: the scheme and an example date, but no
  computed Authorization value (nor a complete worked example for AK/SK).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.signers.wangsu_upstream import docs_authorization, sdk_aksk_headers

HERE = Path(__file__).parent
SOURCE = "tests/signers/wangsu_upstream.py (written from the public documentation)"
SDK = f"wangsu-sdk-python {version('wangsu-sdk-python')} AkSkAuth.get_auth_and_set_headers"
DOC_URL = "https://documents.cdnetworks.com/document/api-doc/api-key-authentication"


def case(
    name: str,
    *,
    user: str,
    api_key: str,
    date: str,
    algorithm: str = "sha1",
    date_header: str = "Date",
    method: str = "GET",
    path: str = "/api/domain",
    query: str = "",
) -> dict[str, Any]:
    authorization = docs_authorization(user, api_key, date, algorithm)
    headers = {date_header: date, "Authorization": authorization, "Accept": "application/json"}
    return {
        "name": name,
        "source": SOURCE,
        "algorithm": algorithm,
        "request": {
            "method": method,
            "host": "open.chinanetcenter.com",
            "path": path,
            "query": query,
            "headers": headers,
            "body": "",
        },
        "credential": {"access_key": user, "secret_key": api_key},
        "date": date,
        "expected": {"authorization": authorization},
    }


def reference_cases() -> list[dict[str, Any]]:
    return [
        case(
            "sha1-date",
            user="wsproxyuser",
            api_key="wangsu-proxy-apikey",
            date="Thu, 17 May 2012 19:37:58 GMT",
        ),
        case(
            "sha256-date",
            user="wsproxyuser",
            api_key="wangsu-proxy-apikey",
            date="Mon, 01 Jan 2024 00:00:00 GMT",
            algorithm="sha256",
            method="POST",
            path="/api/report/domainbandwidth",
            query="datefrom=2024-01-01T00%3A00%3A00%2B08%3A00",
        ),
        case(
            "sha1-x-cnc-date",
            user="other.user@example.com",
            api_key="k3y/with+chars==",
            date="Sat, 29 Feb 2020 23:59:59 GMT",
            date_header="x-cnc-date",
        ),
        case("unicode-user", user="用户-ü", api_key="ключ", date="Wed, 31 Dec 2025 12:00:00 GMT"),
    ]


def aksk_case(
    name: str,
    *,
    method: str,
    uri: str,
    body: str | None = None,
    timestamp: int = 1704067200,
    signed_headers: str | None = None,
    extra: dict[str, str] | None = None,
    ak: str = "wsAKproxy",
    sk: str = "wangsu-proxy-sk",
) -> dict[str, Any]:
    headers = sdk_aksk_headers(
        method, uri, "open.chinanetcenter.com", body, ak, sk, timestamp, signed_headers, extra
    )
    path, _, query = uri.partition("?")
    return {
        "name": name,
        "source": SDK,
        "scheme": "CNC-HMAC-SHA256",
        "request": {
            "method": method,
            "host": "open.chinanetcenter.com",
            "path": path,
            "query": query,
            "headers": headers,
            "body": body or "",
        },
        "credential": {"access_key": ak, "secret_key": sk},
        "timestamp": timestamp,
        "expected": {"authorization": headers["Authorization"]},
    }


def sdk_cases() -> list[dict[str, Any]]:
    return [
        aksk_case("get-query-decoded", method="GET", uri="/api/v1/domain?name=a%20b&tag=%E4%B8%AD"),
        aksk_case(
            "post-json-query-unsigned",
            method="POST",
            uri="/api/v1/refresh?dry=1",
            body='{"urls":["http://a.example/x"]}',
            timestamp=1709528767,
        ),
        aksk_case("put-body", method="PUT", uri="/api/v1/config/7", body='{"on":true}'),
        aksk_case("delete-no-body-hash", method="DELETE", uri="/api/v1/domain/9?force=1"),
        aksk_case(
            "extra-signed-header-lowercased",
            method="GET",
            uri="/api/v1/x",
            signed_headers="Host;Content-Type;X-Cnc-Custom",
            extra={"X-Cnc-Custom": "MiXeD Case"},
            ak="other-AK",
            sk="s/k+==",
        ),
    ]


def doc_cases() -> list[dict[str, Any]]:
    return [
        {
            "name": "doc-date-example",
            "source": DOC_URL,
            "note": "The page documents the scheme (Authorization user:password, the password "
            "an HMAC of the Date header) and gives 'Thu, 17 May 2012 19:37:58 GMT' as the Date "
            "form, but publishes no computed Authorization; only the date is checked here.",
            "date": "Thu, 17 May 2012 19:37:58 GMT",
            "expected": {"signed_at": "2012-05-17T19:37:58+00:00"},
        }
    ]


def main() -> None:
    outputs = (
        ("sdk.json", sdk_cases()),
        ("reference.json", reference_cases()),
        ("doc.json", doc_cases()),
    )
    for filename, cases in outputs:
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
