"""A tiny JD Cloud-like upstream that checks signatures with the vendor SDKs' own signers.

``jingdong_upstream(real_ak, real_sk)`` runs an aiohttp server on a free loopback port (in its
own thread) and yields its base URL.  For every request it re-signs what it received with the
SDK of the request's algorithm — ``jdcloud_apim_sdk.core.signer`` for ``JDCLOUD2-HMAC-SHA256``,
``jdcloud_sdk.core.signer`` for ``JDCLOUD3-HMAC-SHA256`` — and the *real* secret, its clock and
nonce pinned to the request's ``x-jdcloud-date`` and ``x-jdcloud-nonce``, and answers:

* 200 ``{"requestId": ..., "result": {method, path, query, body_sha256, access_key}}`` when the
  Authorization header is exactly what the SDK produces;
* 401 ``{"requestId": ..., "error": {"code": 401, "status": "UNAUTHENTICATED", ...}}`` otherwise.

The yielded URL is a ``str`` with ``.hits`` (requests received so far) and ``.echoes``.
``sdk_sign`` is the same pinned SDK call, for tests.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from aiohttp import web
from jdcloud_apim_sdk.core.credential import Credential as V2Credential
from jdcloud_apim_sdk.core.logger import Logger as V2Logger
from jdcloud_apim_sdk.core.signer import Signer as V2Signer
from jdcloud_sdk.core.credential import Credential as V3Credential
from jdcloud_sdk.core.logger import Logger as V3Logger
from jdcloud_sdk.core.signer import Signer as V3Signer

from tests.servers import app_in_thread, free_port

__all__ = ["UpstreamURL", "jingdong_upstream", "sdk_sign"]

_lock = threading.Lock()
_SKIP = {"authorization", "user-agent", "host"}


def sdk_sign(
    algorithm: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: str,
    ak: str,
    sk: str,
    *,
    region: str,
    service: str,
    x_date: str,
    nonce: str,
) -> dict[str, str]:
    """Sign with the SDK of ``algorithm`` at ``x_date`` with ``nonce``; ``headers`` is updated
    in place (as the SDKs do) and returned."""
    when = _dt.datetime.strptime(x_date, "%Y%m%dT%H%M%SZ")
    signer: Any
    if algorithm.startswith("JDCLOUD2"):
        cls, signer, cred = V2Signer, V2Signer(V2Logger(0)), V2Credential(ak, sk)
    else:
        cls, signer, cred = V3Signer, V3Signer(V3Logger(0)), V3Credential(ak, sk)
    token = headers.get("x-jdcloud-security-token", "")
    with (
        _lock,
        mock.patch.object(cls, "_Signer__now", lambda self: when),
        mock.patch.object(uuid, "uuid4", lambda: nonce),
    ):
        signer.sign(method, service, region, url, headers, body, cred, token)
    return headers


class UpstreamURL(str):
    """The base URL, plus what the server saw."""

    hits: int
    echoes: list[dict[str, Any]]


def _scope(auth: str) -> tuple[str, str, str, str]:
    algorithm, _, rest = auth.partition(" ")
    fields = dict(p.strip().split("=", 1) for p in rest.split(","))
    ak, _date, region, service, _ = fields["Credential"].split("/")
    return algorithm, ak, region, service


def _matches(req: web.Request, raw: bytes, ak: str, sk: str) -> bool:
    auth = req.headers.get("Authorization", "")
    algorithm, claimed_ak, region, service = _scope(auth)
    signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    headers = {n: req.headers[n] for n in signed if n not in _SKIP and n in req.headers}
    if algorithm.startswith("JDCLOUD2"):
        # that SDK sets the date and the nonce itself (from the pinned clock and uuid4)
        headers.pop("x-jdcloud-date", None)
        headers.pop("x-jdcloud-nonce", None)
    url = f"http://{req.host}{req.rel_url.raw_path}"
    if req.rel_url.raw_query_string:
        url += "?" + req.rel_url.raw_query_string
    sdk_sign(
        algorithm,
        req.method,
        url,
        headers,
        raw.decode("utf-8"),
        ak,
        sk,
        region=region,
        service=service,
        x_date=req.headers["x-jdcloud-date"],
        nonce=req.headers["x-jdcloud-nonce"],
    )
    return claimed_ak == ak and headers["Authorization"] == auth


def _app(ak: str, sk: str, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        request_id = f"upstream-{url.hits}"
        try:
            ok = _matches(req, raw, ak, sk)
        except (KeyError, ValueError, IndexError, UnicodeDecodeError):
            ok = False
        if not ok:
            error = {"code": 401, "status": "UNAUTHENTICATED", "message": "signature mismatch"}
            return web.json_response({"requestId": request_id, "error": error}, status=401)
        echo = {
            "method": req.method,
            "path": req.rel_url.raw_path,
            "query": req.rel_url.raw_query_string,
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "access_key": ak,
            "algorithm": req.headers["Authorization"].split(" ", 1)[0],
        }
        url.echoes.append(echo)
        return web.json_response({"requestId": request_id, "result": echo})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def jingdong_upstream(real_ak: str, real_sk: str) -> Iterator[UpstreamURL]:
    """Serve a signature-checking upstream on 127.0.0.1 until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with app_in_thread(_app(real_ak, real_sk, url), port, what="jingdong-upstream"):
        yield url
