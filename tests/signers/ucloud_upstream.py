"""A UCloud-like upstream that checks ``Signature`` with the ``ucloud-sdk-python3`` algorithm.

``ucloud_upstream(real_pk, real_private)`` yields the base URL of a server on 127.0.0.1 that
reads the parameters (query, form body or JSON body — JSON flattened by the SDK's own
``encoder.encode``), recomputes the signature with ``ucloud.core.auth.verify_ac`` and the
*real* private key, and answers ``{"RetCode": 0, ...}`` echoing what it saw on an exact match
(with ``PublicKey`` equal to the real one), else ``{"RetCode": 172, ...}`` with status 401.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from ucloud.core.auth._cfg import verify_ac
from ucloud.core.typesystem import encoder

from tests.signers.qiniu_upstream import Check, Seen, UpstreamURL, checking_upstream

__all__ = ["UpstreamURL", "ucloud_upstream"]


def _params(seen: Seen) -> dict[str, Any]:
    if not seen.body:
        return dict(parse_qsl(seen.query, keep_blank_values=True))
    if seen.headers.get("Content-Type", "").startswith("application/json"):
        return encoder.encode(json.loads(seen.body))  # type: ignore[no-any-return]
    return dict(parse_qsl(seen.body.decode("utf-8"), keep_blank_values=True))


def ucloud_check(real_pk: str, real_private: str) -> Check:
    def check(seen: Seen) -> dict[str, Any] | None:
        params = _params(seen)
        given = params.pop("Signature", None)
        if given != verify_ac(real_private, params) or params.get("PublicKey") != real_pk:
            return None
        return {
            "RetCode": 0,
            "Action": f"{params.get('Action', '')}Response",
            "Echo": {"method": seen.method, "params": params, "in_body": bool(seen.body)},
        }

    return check


@contextmanager
def ucloud_upstream(real_pk: str, real_private: str) -> Iterator[UpstreamURL]:
    """Serve a UCloud-signature-checking upstream on 127.0.0.1 until the block ends."""
    with checking_upstream(ucloud_check(real_pk, real_private), "ucloud") as url:
        yield url
