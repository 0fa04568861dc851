"""Tencent Cloud's own signing code, made reproducible, and a Tencent-like verifying upstream.

``sdk_signed(...)`` runs ``tencentcloud-sdk-python-common``'s request builder
(``CommonClient._build_req_inter``, the code ``call_json`` runs before sending) with its clock
and nonce pinned, and returns the request it would send, as a ``SigningRequest``.

``tencent_upstream(real_ak, real_sk)`` serves an aiohttp app on a free loopback port (in its
own thread) that recomputes every signature with the SDK's algorithm and the *real* secret —
``AbstractClient._get_tc3_signature`` for TC3 (which signs ``content-type;host`` only) and
``Sign.sign`` over ``AbstractClient._format_sign_string`` for v1 — and answers:

* 200 ``{"Response": {"RequestId", "Echo": {method, path, query, body_sha256, secret_id,
  token_present, scheme}}}`` when the signature matches exactly;
* 200 ``{"Response": {"Error": {"Code": "AuthFailure.SignatureFailure"}, "RequestId"}}``
  otherwise (Tencent answers errors with status 200; ``.hits`` tells what reached it).
"""

from __future__ import annotations

import hashlib
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign

from keybroker.signers.base import SigningRequest
from tests.signers.ksyun_upstream import UpstreamURL, serve_app

__all__ = ["UpstreamURL", "pinned", "sdk_client", "sdk_signed", "tencent_upstream"]

_lock = threading.RLock()


@contextmanager
def pinned(timestamp: int, nonce: int = 11886) -> Iterator[None]:
    """Pin the SDK's ``time.time()`` and ``random.randint()`` while the block runs."""
    with _lock:
        saved = abstract_client.time, abstract_client.random
        abstract_client.time = types.SimpleNamespace(time=lambda: timestamp)  # type: ignore[assignment]
        abstract_client.random = types.SimpleNamespace(randint=lambda a, b: nonce)  # type: ignore[assignment]
        try:
            yield
        finally:
            abstract_client.time, abstract_client.random = saved


def sdk_client(
    endpoint: str,
    ak: str,
    sk: str,
    *,
    token: str | None = None,
    service: str = "cvm",
    version: str = "2017-03-12",
    region: str = "ap-guangzhou",
    method: str = "POST",
    sign_method: str = "TC3-HMAC-SHA256",
    protocol: str = "http",
) -> CommonClient:
    """A ``CommonClient`` for ``endpoint`` (``host[:port]``)."""
    http = HttpProfile(endpoint=endpoint, protocol=protocol, reqMethod=method)
    profile = ClientProfile(signMethod=sign_method, httpProfile=http, language="en-US")
    cred = credential.Credential(ak, sk, token)
    return CommonClient(service, version, cred, region, profile=profile)


def sdk_signed(
    client: CommonClient,
    action: str,
    params: dict[str, Any],
    timestamp: int,
    nonce: int = 11886,
    unsigned_payload: bool = False,
) -> SigningRequest:
    """The request ``client`` would send for ``action``, signed at ``timestamp``."""
    client.profile.unsignedPayload = unsigned_payload
    http = client.profile.httpProfile
    req = RequestInternal(http.endpoint, http.reqMethod, "/", header={})
    with pinned(timestamp, nonce):
        client._build_req_inter(action, params, req, {})
    data = req.data if isinstance(req.data, bytes) else str(req.data).encode()
    headers: CIMultiDict[str] = CIMultiDict(
        (k, str(v)) for k, v in req.header.items() if k.lower() != "host"
    )
    if req.method == "GET":
        return SigningRequest("GET", http.endpoint, "/", data.decode(), headers, "http")
    return SigningRequest("POST", http.endpoint, "/", "", headers, "http", data)


# -- the upstream ----------------------------------------------------------------------------


def _tc3_ok(req: web.Request, raw: bytes, ak: str, sk: str) -> bool:
    auth = req.headers["Authorization"]
    fields = dict(p.strip().split("=", 1) for p in auth.removeprefix("TC3-HMAC-SHA256 ").split(","))
    claimed, date, service, _ = fields["Credential"].split("/")
    if claimed != ak or fields["SignedHeaders"] != "content-type;host":
        return False
    header = {
        "Content-Type": req.headers["Content-Type"],
        "Host": req.host,
        "X-TC-Timestamp": req.headers["X-TC-Timestamp"],
    }
    if "X-TC-Content-SHA256" in req.headers:
        header["X-TC-Content-SHA256"] = req.headers["X-TC-Content-SHA256"]
    data: Any = req.rel_url.raw_query_string if req.method == "GET" else raw
    inner = RequestInternal(req.host, req.method, req.rel_url.raw_path, header=header, data=data)
    client = sdk_client(req.host, ak, sk, service=service)
    expected = client._get_tc3_signature(None, inner, date, service, sk)
    return bool(expected == fields["Signature"])


def _v1_ok(req: web.Request, raw: bytes, ak: str, sk: str) -> bool:
    text = req.rel_url.raw_query_string if req.method == "GET" else raw.decode()
    params = dict(parse_qsl(text, keep_blank_values=True))
    sent = params.pop("Signature")
    method = params.get("SignatureMethod", "HmacSHA1")
    client = sdk_client(req.host, ak, sk, method=req.method, sign_method=method)
    expected = Sign.sign(sk, client._format_sign_string(params), method)
    return bool(params["SecretId"] == ak and expected == sent)


def _params(req: web.Request, raw: bytes) -> dict[str, str]:
    text = req.rel_url.raw_query_string if req.method == "GET" else raw.decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True))


def _tc3_secret_id(auth: str) -> str:
    return auth.partition("Credential=")[2].partition("/")[0]


def _echo(req: web.Request, raw: bytes, scheme: str) -> dict[str, Any]:
    params = _params(req, raw)
    return {
        "method": req.method,
        "path": req.rel_url.raw_path,
        "query": "&".join(
            p for p in req.rel_url.raw_query_string.split("&") if not p.startswith("Token=")
        ),
        "body_sha256": hashlib.sha256(raw).hexdigest(),
        "secret_id": params.get("SecretId") or _tc3_secret_id(req.headers.get("Authorization", "")),
        # never the token itself: SDKs log responses, and the suite scans logs for secrets
        "token_present": bool(req.headers.get("X-TC-Token") or params.get("Token")),
        "scheme": scheme,
    }


def _app(ak: str, sk: str, token: str | None, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        request_id = f"upstream-{url.hits}"
        scheme = "tc3" if "Authorization" in req.headers else "v1"
        try:
            ok = _tc3_ok(req, raw, ak, sk) if scheme == "tc3" else _v1_ok(req, raw, ak, sk)
            echo = _echo(req, raw, scheme)
            sent = req.headers.get("X-TC-Token") or _params(req, raw).get("Token")
            ok = ok and sent == token
        except (KeyError, ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            error = {"Code": "AuthFailure.SignatureFailure", "Message": "signature mismatch"}
            return web.json_response({"Response": {"Error": error, "RequestId": request_id}})
        url.echoes.append(echo)
        return web.json_response({"Response": {"RequestId": request_id, "Echo": echo}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def tencent_upstream(
    real_ak: str, real_sk: str, session_token: str | None = None
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking Tencent-like upstream on 127.0.0.1 until the block ends."""
    with serve_app(lambda url: _app(real_ak, real_sk, session_token, url)) as url:
        yield url
