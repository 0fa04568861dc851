"""A tiny Volcengine-like upstream that checks signatures with the SDK's own algorithm.

``volc_upstream(real_ak, real_sk)`` runs an aiohttp server on a free loopback port (in its own
thread) and yields its base URL.  For every request it recomputes the signature with
``volcenginesdkcore.signv4.SignerV4`` and the *real* secret, at the request's own ``X-Date``
(the SDK always signs "now", so its clock is pinned to that date while it runs), and answers:

* 200 with a Volcengine-shaped answer whose ``Result`` echoes ``{method, path, query,
  body_sha256, access_key, security_token}`` when the Authorization header (or the presigned
  ``X-Signature``) matches exactly;
* 403 with ``ResponseMetadata.Error.Code == "SignatureDoesNotMatch"`` otherwise.

The yielded URL is a ``str`` with two extras: ``.hits`` (requests received so far, to assert
that a refused request never reached the upstream) and ``.echoes`` (the JSON answers sent).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from volcenginesdkcore import signv4
from volcenginesdkcore.signv4 import SignerV4

from tests.servers import app_in_thread, free_port

__all__ = ["UpstreamURL", "sdk_clock", "volc_upstream"]

_QUERY_AUTH = {
    "X-Date",
    "X-NotSignBody",
    "X-Credential",
    "X-Algorithm",
    "X-SignedHeaders",
    "X-SignedQueries",
    "X-Security-Token",
    "X-Signature",
}
_clock_lock = threading.Lock()


@contextmanager
def sdk_clock(x_date: str) -> Iterator[None]:
    """Pin ``datetime.datetime.utcnow()`` inside the SDK's signer to ``x_date``."""
    fixed = _dt.datetime.strptime(x_date, "%Y%m%dT%H%M%SZ")

    class _Clock(_dt.datetime):
        @classmethod
        def utcnow(cls) -> _dt.datetime:
            return fixed

    with _clock_lock:
        saved = signv4.datetime
        signv4.datetime = types.SimpleNamespace(datetime=_Clock)
        try:
            yield
        finally:
            signv4.datetime = saved


class UpstreamURL(str):
    """The base URL, plus what the server saw."""

    hits: int
    echoes: list[dict[str, Any]]


def _sdk_name(name: str) -> str:
    # The SDK decides what to sign from the header's spelling: Content-Type, Content-Md5,
    # Host and X-*; give it the spelling it produces itself.
    return "-".join(part.capitalize() for part in name.split("-"))


def _scope(credential: str) -> tuple[str, str, str]:
    ak, _date, region, service, _ = credential.split("/")
    return ak, region, service


def _header_ok(req: web.Request, body: str, ak: str, sk: str, token: str | None) -> bool:
    auth = req.headers.get("Authorization", "")
    fields = dict(p.strip().split("=", 1) for p in auth.removeprefix("HMAC-SHA256 ").split(","))
    claimed_ak, region, service = _scope(fields["Credential"])
    names = fields["SignedHeaders"].split(";")
    headers = {_sdk_name(n): req.headers[n] for n in names if n != "host" and n in req.headers}
    headers["Host"] = req.host
    headers.pop("X-Security-Token", None)  # the SDK adds it back from the session token
    query = parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True)
    with sdk_clock(req.headers["X-Date"]):
        SignerV4.sign(
            req.rel_url.raw_path, req.method, headers, body, None, query, ak, sk, region, service,
            token,
        )  # fmt: skip
    sent_token = req.headers.get("X-Security-Token")
    return claimed_ak == ak and headers["Authorization"] == auth and sent_token == token


def _query_ok(req: web.Request, ak: str, sk: str, token: str | None) -> bool:
    query = dict(parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True))
    claimed_ak, region, service = _scope(query["X-Credential"])
    business = [(k, v) for k, v in query.items() if k not in _QUERY_AUTH]
    host = req.host if query.get("X-SignedHeaders") == "host" else None
    with sdk_clock(query["X-Date"]):
        signed = SignerV4.sign_url(
            req.rel_url.raw_path, req.method, business, ak, sk, region, service, token, host
        )
    expected = dict(parse_qsl(signed, keep_blank_values=True))
    return claimed_ak == ak and expected == query


def _app(ak: str, sk: str, token: str | None, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        try:
            if "X-Signature" in req.rel_url.query:
                ok = _query_ok(req, ak, sk, token)
            else:
                ok = _header_ok(req, raw.decode("utf-8"), ak, sk, token)
        except (KeyError, ValueError, UnicodeDecodeError):
            ok = False
        meta = {"RequestId": f"upstream-{url.hits}", "Action": req.query.get("Action", "")}
        if not ok:
            error = {"Code": "SignatureDoesNotMatch", "Message": "signature mismatch"}
            return web.json_response({"ResponseMetadata": {**meta, "Error": error}}, status=403)
        echo = {
            "method": req.method,
            "path": req.rel_url.raw_path,
            "query": req.rel_url.raw_query_string,
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "access_key": ak,
            "security_token": token,
        }
        url.echoes.append(echo)
        return web.json_response({"ResponseMetadata": meta, "Result": echo})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def volc_upstream(
    real_ak: str, real_sk: str, session_token: str | None = None
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking upstream on 127.0.0.1 until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with app_in_thread(_app(real_ak, real_sk, session_token, url), port, what="volc-upstream"):
        yield url
