"""Error answers an unmodified vendor SDK can parse (native mode).

In key-proxy mode every error is key-proxy's JSON.  In native mode the caller is a vendor SDK,
which cannot read that JSON (botocore expects XML for query and S3 APIs), so the same code and
message are rendered in the vendor's own error shape; the key-proxy code (``Proxy.*``) is the
error code the SDK reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from xml.sax.saxutils import escape

__all__ = ["render"]


def render(
    vendor: str | None,
    service: str | None,
    headers: dict[str, str],
    code: str,
    message: str,
    request_id: str,
) -> tuple[str, bytes, dict[str, str]] | None:
    """(content type, body, extra headers) for ``vendor``'s SDKs, or ``None`` for key-proxy's."""
    if vendor in ("aws", "ksyun"):
        return _aws(service, headers, code, message, request_id)
    shape = _JSON_SHAPES.get(vendor or "")
    if shape is not None:
        return "application/json", json.dumps(shape(code, message, request_id)).encode(), {}
    return None


_Shape = Callable[[str, str, str], object]
_JSON_SHAPES: dict[str, _Shape] = {
    "aliyun": lambda c, m, r: {"Code": c, "Message": m, "RequestId": r},
    "baidu": lambda c, m, r: {"code": c, "message": m, "requestId": r},
    "huawei": lambda c, m, r: {"error_code": c, "error_msg": m, "request_id": r},
    "ucloud": lambda c, m, r: {"RetCode": 172, "Message": f"{c}: {m}", "RequestId": r},
    "qiniu": lambda c, m, r: {"error": f"{c}: {m}", "reqid": r},
    "tencent": lambda c, m, r: {"Response": {"Error": {"Code": c, "Message": m}, "RequestId": r}},
}


def _aws(
    service: str | None, headers: dict[str, str], code: str, message: str, request_id: str
) -> tuple[str, bytes, dict[str, str]]:
    extra = {"x-amzn-RequestId": request_id, "x-amz-request-id": request_id}
    content_type = headers.get("content-type", "")
    if "x-amz-target" in headers or "amz-json" in content_type:
        body = json.dumps({"__type": code, "message": message}).encode()
        return "application/x-amz-json-1.1", body, {**extra, "x-amzn-ErrorType": code}
    c, m, r = escape(code), escape(message), escape(request_id)
    if service == "s3":
        xml = f"<Error><Code>{c}</Code><Message>{m}</Message><RequestId>{r}</RequestId></Error>"
    else:
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{c}</Code><Message>{m}</Message>"
            f"</Error><RequestId>{r}</RequestId></ErrorResponse>"
        )
    return "application/xml", ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode(), extra
