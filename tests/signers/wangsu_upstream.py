"""Wangsu's two schemes as the tests' ground truth, and an upstream that checks them.

**AK/SK** (``CNC-HMAC-SHA256``): ``wangsu-sdk-python``'s own ``AkSkAuth`` signs
(:func:`sdk_aksk_headers`) and recomputes (the upstream check).

**API-key** (Basic over a signed date), written from the public documentation:

No installable Python package signs this scheme: ``wangsu-sdk-python`` only implements the
newer ``CNC-HMAC-SHA256`` AK/SK scheme, and ``cdnetworks`` (which does sign it, with SHA-256)
depends on ``sonicprobe`` -> ``pycurl`` and pins ``cryptography`` to an incompatible range.  So
this module is the *independent* implementation the tests compare keybroker against, written
from https://documents.cdnetworks.com/document/api-doc/api-key-authentication and Wangsu's
"OpenApiDemo" sample: ``Authorization: Basic base64(user + ":" + base64(HMAC(apiKey, Date)))``
with HMAC-SHA1 (documented) or HMAC-SHA256 (the sample), the date from ``x-cnc-date`` when
present, else ``Date``.  It shares no code with ``keybroker.signers.wangsu``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from wangsu.common.auth import AkSkAuth as aksk_module
from wangsu.common.auth.AkSkAuth import AkSkAuth
from wangsu.common.auth.HttpRequestMsg import HttpRequestMsg

from tests.signers.qiniu_upstream import Check, Seen, UpstreamURL, checking_upstream

__all__ = [
    "UpstreamURL",
    "docs_authorization",
    "docs_date",
    "sdk_aksk_headers",
    "sdk_clock",
    "wangsu_upstream",
]

_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def docs_date(when: datetime | None = None) -> str:
    """An RFC 1123 date as the documentation shows it: ``Thu, 17 May 2012 19:37:58 GMT``."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return (
        f"{days[when.weekday()]}, {when.day:02d} {months[when.month - 1]} {when.year} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} GMT"
    )


def docs_authorization(user: str, api_key: str, date: str, algorithm: str = "sha1") -> str:
    """``Basic base64(user:base64(HMAC-<algorithm>(api_key, date)))``."""
    mac = hmac.new(api_key.encode("utf-8"), date.encode("utf-8"), _HASHES[algorithm])
    password = base64.b64encode(mac.digest()).decode("ascii")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


_clock_lock = threading.Lock()


@contextmanager
def sdk_clock(timestamp: int) -> Iterator[None]:
    """Pin the SDK signer's ``time.time()`` to ``timestamp``."""
    shim = types.SimpleNamespace(time=lambda: float(timestamp))
    with _clock_lock:
        saved = aksk_module.time  # type: ignore[attr-defined]
        aksk_module.time = shim  # type: ignore[attr-defined]
        try:
            yield
        finally:
            aksk_module.time = saved  # type: ignore[attr-defined]


def sdk_aksk_headers(
    method: str,
    uri: str,
    host: str,
    body: str | None,
    ak: str,
    sk: str,
    timestamp: int | None = None,
    signed_headers: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers ``wangsu-sdk-python`` sends for this request (``uri`` is path?query)."""
    msg = HttpRequestMsg()
    msg.uri, msg.method, msg.host, msg.body = uri, method, host, body
    msg.signed_headers = AkSkAuth.get_signed_headers(signed_headers)
    for name, value in (extra or {}).items():
        msg.put_header(name, value)
    if timestamp is None:
        AkSkAuth.get_auth_and_set_headers(msg, ak, sk, None)
    else:
        with sdk_clock(timestamp):
            AkSkAuth.get_auth_and_set_headers(msg, ak, sk, None)
    return dict(msg.headers)


def _aksk_accepts(seen: Seen, ak: str, sk: str) -> bool:
    headers = {k.lower(): v for k, v in seen.headers.items()}
    msg = HttpRequestMsg()
    msg.uri, msg.method = seen.raw_path, seen.method
    msg.body = seen.body.decode("utf-8") if seen.body else None
    msg.headers = {**headers, "Host": seen.host}
    authorization = headers.get("authorization", "")
    signed = authorization.partition("SignedHeaders=")[2].partition(",")[0]
    msg.signed_headers = signed
    expected = AkSkAuth.get_signature(msg, sk, headers.get("x-cnc-timestamp", ""))
    return authorization == AkSkAuth.gen_authorization(ak, signed, expected)


def wangsu_check(user: str, api_key: str) -> Check:
    def check(seen: Seen) -> dict[str, Any] | None:
        if seen.headers.get("Authorization", "").startswith("CNC-HMAC-SHA256 "):
            if not _aksk_accepts(seen, user, api_key):
                return None
            return {
                "method": seen.method,
                "path": seen.path,
                "query": seen.query,
                "algorithm": "CNC-HMAC-SHA256",
                "date": seen.headers.get("x-cnc-timestamp"),
                "body": seen.body.decode("utf-8", "replace"),
            }
        headers = {k.lower(): v for k, v in seen.headers.items()}
        date = headers.get("x-cnc-date") or headers.get("date", "")
        given = headers.get("authorization", "")
        for algorithm in _HASHES:
            if hmac.compare_digest(given, docs_authorization(user, api_key, date, algorithm)):
                return {
                    "method": seen.method,
                    "path": seen.path,
                    "query": seen.query,
                    "algorithm": algorithm,
                    "date": date,
                    "body": seen.body.decode("utf-8", "replace"),
                }
        return None

    return check


@contextmanager
def wangsu_upstream(user: str, api_key: str) -> Iterator[UpstreamURL]:
    """Serve a Wangsu-authentication-checking upstream on 127.0.0.1 until the block ends."""
    with checking_upstream(wangsu_check(user, api_key), "wangsu") as url:
        yield url
