"""A tiny Huawei-Cloud-like upstream that checks signatures with the SDK's own algorithm.

``huawei_upstream(real_ak, real_sk, token)`` runs an aiohttp server on a free loopback port (in
its own thread) and yields its base URL.  For every request it rebuilds an ``SdkRequest`` from
what it received — the headers named in ``SignedHeaders`` (as API Gateway does), the raw path
and query, the body, and the request's own ``X-Sdk-Date`` (which the SDK signs at when the
header is present) — signs it with ``huaweicloudsdkcore`` and the *real* secret, and answers:

* 200 with a JSON echo ``{method, path, query, body_sha256, access_key, security_token}`` when
  the Authorization header matches exactly, and the session token is the real one;
* 401 with Huawei's ``APIGW.0301`` error body otherwise.

The yielded URL is a ``str`` with ``.hits`` (requests received) and ``.echoes`` (answers sent).
``sdk_sign`` is the client side: the SDK signing a request, returned as keybroker's
``SigningRequest`` plus body.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from multidict import CIMultiDict
from requests.utils import requote_uri

from keybroker.credentials import Credential
from keybroker.signers.base import SigningRequest
from tests.servers import app_in_thread, free_port

__all__ = ["UpstreamURL", "huawei_upstream", "sdk_date", "sdk_sign"]

PROJECT = "0123456789abcdef0123456789abcdef"


def sdk_date(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def sdk_sign(
    cred: Credential,
    *,
    method: str = "POST",
    host: str = "ecs.cn-north-4.myhuaweicloud.com",
    path: str = f"/v1/{PROJECT}/cloudservers",
    query: list[tuple[str, str]] | None = None,
    body: str = '{"server": {"name": "web-1"}}',
    content_type: str = "application/json",
    when: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[SigningRequest, bytes]:
    """Sign like the SDK does; the wire path as requests sends it, the query the SDK's own."""
    basic = BasicCredentials(cred.access_key, cred.secret_key.reveal(), PROJECT)
    if cred.access_token:
        basic.with_security_token(cred.access_token.reveal())
    headers = {"Content-Type": content_type, "User-Agent": "huaweicloud-usdk-python/3.0",
               "X-Sdk-Date": sdk_date(when), **(extra or {})}  # fmt: skip
    req = SdkRequest(method=method, schema="https", host=host, resource_path=path,
                     query_params=list(query or []), header_params=headers,
                     body=body)  # fmt: skip
    basic.sign_request(req)
    # uri is resource_path + "?" + query: split on the known path, a "?" may be inside it.
    wire_query = req.uri[len(req.resource_path) :].removeprefix("?")
    # the SDK's HTTP client (requests) sends the path through requote_uri: what is not
    # allowed in a URL is percent-encoded, a "%XX" already there is left alone
    signed = SigningRequest(method, host, requote_uri(req.resource_path), wire_query,
                            CIMultiDict(req.header_params))  # fmt: skip
    return signed, body.encode()


class UpstreamURL(str):
    """The base URL, plus what the server saw."""

    hits: int
    echoes: list[dict[str, Any]]


def _fields(auth: str) -> dict[str, str]:
    rest = auth.removeprefix("SDK-HMAC-SHA256 ")
    return dict(p.strip().split("=", 1) for p in rest.split(","))


def _check(req: web.Request, body: bytes, ak: str, sk: str, token: str | None) -> bool:
    auth = req.headers.get("Authorization", "")
    fields = _fields(auth)
    names = fields["SignedHeaders"].split(";")
    headers = {n: (req.host if n == "host" else req.headers[n]) for n in names}
    sdk_req = SdkRequest(
        method=req.method,
        schema="http",
        host=req.host,
        resource_path=req.rel_url.raw_path,
        query_params=parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True),
        header_params=headers,
        body=body,
    )
    # The SDK always signs now-or-X-Sdk-Date and never a token it was not given: rebuild both.
    BasicCredentials(ak, sk).sign_request(sdk_req)
    sent_token = req.headers.get("X-Security-Token")
    return (
        fields["Access"] == ak
        and sdk_req.header_params["Authorization"] == auth
        and (sent_token == token)
    )


def _app(ak: str, sk: str, token: str | None, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        try:
            ok = _check(req, raw, ak, sk, token)
        except (KeyError, ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            error = {
                "error_code": "APIGW.0301",
                "error_msg": "Incorrect IAM authentication information: verify aksk signature fail",
            }
            return web.json_response(error, status=401)
        echo = {
            "method": req.method,
            "path": req.rel_url.raw_path,
            "query": req.rel_url.raw_query_string,
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "access_key": ak,
            "security_token": token,
        }
        url.echoes.append(echo)
        return web.json_response(echo)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def serve(app: web.Application, url: UpstreamURL, port: int) -> Iterator[UpstreamURL]:
    """Run ``app`` on 127.0.0.1:``port`` in a thread until the block ends."""
    with app_in_thread(app, port, what="vendor-upstream"):
        yield url


@contextmanager
def huawei_upstream(
    real_ak: str, real_sk: str, session_token: str | None = None
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking upstream on 127.0.0.1 until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with serve(_app(real_ak, real_sk, session_token, url), url, port):
        yield url
