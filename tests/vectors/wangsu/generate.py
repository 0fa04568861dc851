"""Regenerate the Wangsu known-answer vectors.

Run from the repository root: ``python tests/vectors/wangsu/generate.py``.  No installable
Python package signs Wangsu's API-key scheme (see ``tests/signers/wangsu_upstream.py``), so
``reference.json`` is produced by the independent implementation written from the public
documentation in that module, at fixed dates.  ``doc.json`` records what the documentation
publishes: the scheme and an example date, but no computed Authorization value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.signers.wangsu_upstream import docs_authorization

HERE = Path(__file__).parent
SOURCE = "tests/signers/wangsu_upstream.py (written from the public documentation)"
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
    for filename, cases in (("reference.json", reference_cases()), ("doc.json", doc_cases())):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
