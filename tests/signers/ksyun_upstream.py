"""A tiny Kingsoft-like upstream that checks signatures with the SDK's own algorithm.

Kingsoft's Python SDK (``kingsoftcloud-sdk-python``, module ``ksyun``) signs every call with
``requests_aws4auth.AWS4Auth``.  ``ksyun_upstream(real_ak, real_sk)`` runs an aiohttp server on
a free loopback port (in its own thread) and, for every request, rebuilds it as a
``requests.PreparedRequest`` and signs it again with ``AWS4Auth`` and the *real* secret, at the
request's own ``X-Amz-Date``, over the headers the request says it signed.  It answers:

* 200 with ``{"RequestId", "Echo": {method, path, query, body_sha256, access_key, region,
  service}}`` when the Authorization header matches exactly;
* 403 with ``{"Error": {"Code": "SignatureDoesNotMatch"}}`` otherwise.

The yielded URL is a ``str`` with ``.hits`` (requests received) and ``.echoes`` (answers sent).
:func:`serve_app` (the thread and loop around an aiohttp app) is shared with the Tencent
upstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from aiohttp import web
from requests_aws4auth import AWS4Auth

from tests.servers import app_in_thread, free_port

__all__ = ["UpstreamURL", "aws4auth_authorization", "ksyun_upstream", "serve_app"]


class UpstreamURL(str):
    """The base URL, plus what the server saw."""

    hits: int
    echoes: list[dict[str, Any]]


@contextmanager
def serve_app(make_app: Callable[[UpstreamURL], web.Application]) -> Iterator[UpstreamURL]:
    """Serve ``make_app(url)`` on 127.0.0.1 in a thread until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with app_in_thread(make_app(url), port, what="vendor-upstream"):
        yield url


def _fields(auth: str) -> dict[str, str]:
    rest = auth.removeprefix("AWS4-HMAC-SHA256 ")
    return dict(part.strip().split("=", 1) for part in rest.split(","))


def aws4auth_authorization(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    ak: str,
    sk: str,
    region: str,
    service: str,
    signed: list[str],
    token: str | None = None,
) -> str:
    """The Authorization ``requests-aws4auth`` computes for this request (its ``X-Amz-Date``
    kept), over the header names ``signed``."""
    prepared = requests.Request(method, url, headers=dict(headers), data=body).prepare()
    auth = AWS4Auth(ak, sk, region, service, include_hdrs=signed, session_token=token)
    signed_req = auth(prepared)
    return str(signed_req.headers["Authorization"])


def _check(req: web.Request, body: bytes, ak: str, sk: str, token: str | None) -> dict[str, str]:
    """The echo when the signature is right; raises ``KeyError``/``ValueError`` otherwise."""
    sent = req.headers["Authorization"]
    fields = _fields(sent)
    claimed_ak, _date, region, service, _ = fields["Credential"].split("/")
    names = fields["SignedHeaders"].split(";")
    headers = {n: req.headers[n] for n in names if n != "host" and n in req.headers}
    headers["host"] = req.host
    headers["x-amz-date"] = req.headers["X-Amz-Date"]
    url = f"http://{req.host}{req.rel_url.raw_path_qs}"
    expected = aws4auth_authorization(
        req.method, url, headers, body, ak, sk, region, service, names, token
    )
    if claimed_ak != ak or expected != sent or req.headers.get("X-Amz-Security-Token") != token:
        raise ValueError("signature mismatch")
    return {"region": region, "service": service}


def _app(ak: str, sk: str, token: str | None, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        request_id = f"upstream-{url.hits}"
        try:
            scope = _check(req, raw, ak, sk, token)
        except (KeyError, ValueError):
            error = {"Code": "SignatureDoesNotMatch", "Message": "signature mismatch"}
            return web.json_response({"RequestId": request_id, "Error": error}, status=403)
        echo = {
            "method": req.method,
            "path": req.rel_url.raw_path,
            "query": req.rel_url.raw_query_string,
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "access_key": ak,
            **scope,
        }
        url.echoes.append(echo)
        return web.json_response({"RequestId": request_id, "Echo": echo})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def ksyun_upstream(
    real_ak: str, real_sk: str, session_token: str | None = None
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking Kingsoft-like upstream on 127.0.0.1 until the block ends."""
    with serve_app(lambda url: _app(real_ak, real_sk, session_token, url)) as url:
        yield url
