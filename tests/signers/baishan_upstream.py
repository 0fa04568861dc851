"""Baishan Cloud's token authentication written from the public documentation, and an upstream
that checks it.

Baishan publishes no Python SDK; its API documentation (portal.baishancloud.com, "API Call
Method") says: "https+token, that is, put the token parameter in the querystring", and its
samples also send the token inside a JSON body.  This module is the independent
implementation the tests compare keybroker against; it shares no code with
``keybroker.signers.baishan``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

from tests.signers.qiniu_upstream import Check, Seen, UpstreamURL, checking_upstream

__all__ = ["UpstreamURL", "baishan_upstream", "presented_tokens", "with_token"]


def presented_tokens(query: str, body: bytes, content_type: str) -> list[str]:
    """Every token the request carries, wherever the documentation allows it."""
    found = parse_qs(query, keep_blank_values=True).get("token", [])
    if body and content_type.startswith("application/json"):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "token" in doc:
            found.append(doc["token"])
    elif body and content_type.startswith("application/x-www-form-urlencoded"):
        found += parse_qs(body.decode("utf-8"), keep_blank_values=True).get("token", [])
    return found


def with_token(query: list[tuple[str, str]], token: str) -> str:
    """A documented GET query: the parameters plus ``token``."""
    return urlencode([("token", token), *query])


def baishan_check(real_token: str) -> Check:
    def check(seen: Seen) -> dict[str, Any] | None:
        ctype = seen.headers.get("Content-Type", "")
        if presented_tokens(seen.query, seen.body, ctype) != [real_token]:
            return None
        return {
            "code": 0,
            "data": {
                "method": seen.method,
                "path": seen.path,
                "params": [p for p in parse_qsl(seen.query) if p[0] != "token"],
                "body": seen.body.decode("utf-8", "replace"),
            },
        }

    return check


@contextmanager
def baishan_upstream(real_token: str) -> Iterator[UpstreamURL]:
    """Serve a Baishan-token-checking upstream on 127.0.0.1 until the block ends."""
    with checking_upstream(baishan_check(real_token), "baishan") as url:
        yield url
