"""Error answers in AWS's shapes, which botocore (and Kingsoft Cloud's SDKs, built on it)
parse: JSON for the JSON protocols (``X-Amz-Target`` or an ``amz-json`` body), S3's
``<Error>`` XML for S3, the query protocols' ``<ErrorResponse>`` XML for everything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from xml.sax.saxutils import escape

from keybroker.signers.base import ErrorAnswer

__all__ = ["aws_error"]


def aws_error(
    service: str | None, headers: Mapping[str, str], code: str, message: str, request_id: str
) -> ErrorAnswer:
    """The refusal as botocore reads it for a request of ``service`` with ``headers`` (names
    in lower case)."""
    extra = {"x-amzn-RequestId": request_id, "x-amz-request-id": request_id}
    content_type = headers.get("content-type", "")
    if "x-amz-target" in headers or "amz-json" in content_type:
        body = json.dumps({"__type": code, "message": message}).encode()
        return ErrorAnswer("application/x-amz-json-1.1", body, {**extra, "x-amzn-ErrorType": code})
    c, m, r = escape(code), escape(message), escape(request_id)
    if service == "s3":
        xml = f"<Error><Code>{c}</Code><Message>{m}</Message><RequestId>{r}</RequestId></Error>"
    else:
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{c}</Code><Message>{m}</Message>"
            f"</Error><RequestId>{r}</RequestId></ErrorResponse>"
        )
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()
    return ErrorAnswer("application/xml", body, extra)
