"""Regenerate the Qiniu known-answer vectors with the vendor SDK's own signer.

Run from the repository root: ``python tests/vectors/qiniu/generate.py``.  ``sdk.json`` is
signed by ``qiniu.Auth.token_of_request`` (QBox) and ``qiniu.QiniuMacAuth.token_of_request``
(Qiniu); neither reads a clock when ``X-Qiniu-Date`` is given, so the output is reproducible.
``doc.json`` holds the worked examples of Qiniu's public documentation, values copied from
the pages (not computed here).
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qiniu import Auth, QiniuMacAuth

HERE = Path(__file__).parent
SDK = f"qiniu {version('qiniu')}"
FORM = "application/x-www-form-urlencoded"


def _request(method: str, url: str, headers: dict[str, str], body: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "method": method,
        "host": parts.netloc,
        "path": parts.path,
        "query": parts.query,
        "headers": headers,
        "body": body,
    }


def qbox_case(
    name: str,
    url: str,
    *,
    method: str = "POST",
    body: str = "",
    content_type: str | None = None,
    ak: str = "QNproxyAK",
    sk: str = "qiniu-proxy-secret",
) -> dict[str, Any]:
    token = Auth(ak, sk).token_of_request(url, body or None, content_type)
    headers = {"Authorization": f"QBox {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    return {
        "name": name,
        "source": f"{SDK} Auth.token_of_request",
        "scheme": "QBox",
        "request": _request(method, url, headers, body),
        "credential": {"access_key": ak, "secret_key": sk},
        "expected": {"authorization": headers["Authorization"]},
    }


def qiniu_case(
    name: str,
    url: str,
    *,
    method: str = "GET",
    body: str = "",
    content_type: str | None = None,
    x_headers: dict[str, str] | None = None,
    ak: str = "QNproxyAK",
    sk: str = "qiniu-proxy-secret",
) -> dict[str, Any]:
    mac = QiniuMacAuth(ak, sk)
    x_headers = x_headers or {}
    token = mac.token_of_request(
        method, None, url, mac.qiniu_headers(x_headers), content_type, body or None
    )
    headers = {**x_headers, "Authorization": f"Qiniu {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    return {
        "name": name,
        "source": f"{SDK} QiniuMacAuth.token_of_request",
        "scheme": "Qiniu",
        "request": _request(method, url, headers, body),
        "credential": {"access_key": ak, "secret_key": sk},
        "x_qiniu_date": x_headers.get("X-Qiniu-Date"),
        "expected": {"authorization": headers["Authorization"]},
    }


def sdk_cases() -> list[dict[str, Any]]:
    date = {"X-Qiniu-Date": "20240101T000000Z"}
    return [
        qbox_case(
            "qbox-stat-no-body", "https://rs.qiniuapi.com/stat/YnVja2V0OmtleQ==", method="GET"
        ),
        qbox_case("qbox-list-query", "https://rsf.qbox.me/list?bucket=b&limit=10&prefix=a%2Fb"),
        qbox_case(
            "qbox-form-body-signed",
            "https://rs.qiniuapi.com/batch",
            body="op=/stat/YTpi&op=/delete/YTpj",
            content_type=FORM,
        ),
        qbox_case(
            "qbox-json-body-unsigned",
            "https://fusion.qiniuapi.com/v2/tune/refresh",
            body='{"urls":["http://a.example/x"]}',
            content_type="application/json",
        ),
        qbox_case(
            "qbox-other-key",
            "http://api.qiniu.com/v6/domain/list?sourceTypes=qiniuBucket",
            method="GET",
            ak="AnotherAK-_",
            sk="s3cr3t/with+chars=",
        ),
        qiniu_case("qiniu-get-dated", "https://uc.qbox.me/v2/query?ak=x&bucket=b", x_headers=date),
        qiniu_case(
            "qiniu-post-json",
            "https://api.qiniuapi.com/v3/sms/message",
            method="POST",
            body='{"mobile":"1","template_id":"t"}',
            content_type="application/json",
            x_headers=date,
        ),
        qiniu_case(
            "qiniu-octet-stream-unsigned",
            "https://up.qiniup.com/put/-1",
            method="POST",
            body="binary-bytes",
            content_type="application/octet-stream",
            x_headers=date,
        ),
        qiniu_case(
            "qiniu-extra-headers",
            "http://127.0.0.1:9000/buckets?shared=rd",
            method="GET",
            content_type=FORM,
            x_headers={**date, "X-Qiniu-Meta-Zeta": "z", "X-Qiniu-Bbb": "b b"},
        ),
        qiniu_case(
            "qiniu-undated",
            "https://api.qiniuapi.com/v6/domain/list",
            method="PUT",
            body="a=1&b=2",
            content_type=FORM,
        ),
    ]


def doc_cases() -> list[dict[str, Any]]:
    qbox_url = "http://rs.qiniu.com/move/bmV3ZG9jczpmaW5kX21hbi50eHQ=/bmV3ZG9jczpmaW5kLm1hbi50eHQ="
    return [
        {
            "name": "doc-qbox-move",
            "source": "https://developer.qiniu.com/kodo/manual/6671/"
            "historical-document-management-certificate",
            "scheme": "QBox",
            "request": _request(
                "POST",
                qbox_url,
                {"Authorization": "QBox MY_ACCESS_KEY:FXsYh0wKHYPEsIAgdPD9OfjkeEM="},
                "",
            ),
            "credential": {"access_key": "MY_ACCESS_KEY", "secret_key": "MY_SECRET_KEY"},
            "expected": {
                "authorization": "QBox MY_ACCESS_KEY:FXsYh0wKHYPEsIAgdPD9OfjkeEM=",
                "signing_data": "/move/bmV3ZG9jczpmaW5kX21hbi50eHQ=/bmV3ZG9jczpmaW5kLm1hbi50eHQ=\n",
                "hmac_hex": "157b18874c0a1d83c4b0802074f0fd39f8e47843",
            },
        }
    ]


def main() -> None:
    for filename, cases in (("sdk.json", sdk_cases()), ("doc.json", doc_cases())):
        text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
        (HERE / filename).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
