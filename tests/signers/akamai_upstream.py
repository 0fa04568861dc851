"""A tiny Akamai-like upstream that checks EdgeGrid signatures with edgegrid-python.

``akamai_upstream(client_token, access_token, client_secret)`` runs an aiohttp server on a free
loopback port (in its own thread) and yields its base URL.  For every request it takes the
timestamp and nonce from the received Authorization header and asks edgegrid-python's own
``EdgeGridAuthHeaders`` (built with the *real* credential) for the header it would send for
exactly this method, URL, Host and body; it answers 200 with a JSON echo ``{method, path,
query, body_sha256, client_token}`` only when the two are identical, else 401 like Akamai.

The yielded URL is a ``str`` with ``.hits`` (requests received so far, to assert that a refused
request never reached the upstream) and ``.echoes`` (the JSON answers sent).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from akamai.edgegrid.edgegrid import EdgeGridAuthHeaders
from requests.structures import CaseInsensitiveDict

from tests.servers import app_in_thread, free_port

__all__ = ["UpstreamURL", "akamai_upstream"]

# edgegrid-python logs its tokens, signing key and body at DEBUG; the test run records every
# level for the secret scan, and these are the SDK's lines, not keybroker's.
logging.getLogger("akamai.edgegrid").setLevel(logging.INFO)


class UpstreamURL(str):
    """The base URL, plus what the server saw."""

    hits: int
    echoes: list[dict[str, Any]]


def _auth_fields(value: str) -> dict[str, str]:
    body = value.removeprefix("EG1-HMAC-SHA256 ")
    return dict(part.split("=", 1) for part in body.split(";") if "=" in part)


def _expected(req: web.Request, raw: bytes, sdk: EdgeGridAuthHeaders) -> str:
    fields = _auth_fields(req.headers.get("Authorization", ""))
    url = f"http://{req.host}{req.rel_url.raw_path}"
    if req.rel_url.raw_query_string:
        url += "?" + req.rel_url.raw_query_string
    request = SimpleNamespace(
        method=req.method, url=url, headers=CaseInsensitiveDict({"Host": req.host}), body=raw
    )
    return str(sdk.make_auth_header(request, fields["timestamp"], fields["nonce"]))


def _app(sdk: EdgeGridAuthHeaders, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        try:
            ok = _expected(req, raw, sdk) == req.headers.get("Authorization")
        except (KeyError, ValueError):
            ok = False
        if not ok:
            return web.json_response(
                {
                    "type": "https://problems.luna.akamaiapis.net/-/pep-authn/deny",
                    "title": "Not authorized",
                    "status": 401,
                },
                status=401,
            )
        echo = {
            "method": req.method,
            "path": req.rel_url.raw_path,
            "query": req.rel_url.raw_query_string,
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "client_token": sdk.client_token,
        }
        url.echoes.append(echo)
        return web.json_response(echo)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def akamai_upstream(
    client_token: str, access_token: str, client_secret: str
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking upstream on 127.0.0.1 until the block ends."""
    sdk = EdgeGridAuthHeaders(client_token, client_secret, access_token)
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with app_in_thread(_app(sdk, url), port, what="akamai-upstream"):
        yield url
