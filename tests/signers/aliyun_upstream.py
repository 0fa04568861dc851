"""A tiny Alibaba-Cloud-like upstream that checks signatures with the vendor SDK's own code.

``aliyun_upstream(real_ak, real_sk, token)`` runs an aiohttp server on a free loopback port (in
its own thread) and yields its base URL.  For every request it recomputes the signature with the
*real* secret using ``alibabacloud_tea_openapi.utils.Utils`` — ``get_authorization`` for
``ACS3-HMAC-SHA256`` (over the body hash the upstream computes itself) and
``get_rpcsignature`` for RPC ``HMAC-SHA1`` (over the query plus the form body) — and answers:

* 200 with ``{"RequestId": ..., "Echo": {scheme, method, path, query, body_sha256,
  access_key, security_token, action}}`` when the signature matches exactly (the token is
  never echoed: ``security_token`` says whether the expected one came, and ``SecurityToken``
  is masked in ``query`` — the SDKs log response bodies at debug level);
* 403 ``{"Code": "SignatureDoesNotMatch", ...}`` (the shape the SDKs parse) otherwise;
* 400 ``{"Code": "SignatureNonceUsed", ...}`` for a nonce already accepted, as Alibaba Cloud
  does — which is why the proxy keeps the client's nonce when it re-signs.

The yielded URL is a ``str`` with extras: ``.hits`` (requests received so far), ``.echoes``
(the accepted requests), ``.nonces`` (accepted nonces) and ``.seen`` (every request as
``(method, raw path, raw query, headers, body)``, so tests can feed what an SDK really sent to
the signer).  ``core_clock`` pins aliyun-python-sdk-core's timestamp and nonce.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from alibabacloud_tea_openapi.utils import Utils
from aliyunsdkcore.utils import parameter_helper
from darabonba.request import DaraRequest
from multidict import CIMultiDict

from tests.servers import app_in_thread, free_port

__all__ = ["Seen", "UpstreamURL", "aliyun_upstream", "core_clock", "sdk_acs3_authorization"]

ACS3 = "ACS3-HMAC-SHA256"
_clock_lock = threading.Lock()


Seen = tuple[str, str, str, "CIMultiDict[str]", bytes]


class UpstreamURL(str):
    """The base URL, plus what the server saw."""

    hits: int
    echoes: list[dict[str, Any]]
    nonces: set[str]
    seen: list[Seen]


@contextmanager
def core_clock(timestamp: str, nonce: str) -> Iterator[None]:
    """Pin aliyun-python-sdk-core's ``Timestamp`` and ``SignatureNonce`` while signing."""
    with _clock_lock:
        saved = parameter_helper.get_iso_8061_date, parameter_helper.get_uuid
        parameter_helper.get_iso_8061_date = lambda: timestamp
        parameter_helper.get_uuid = lambda: nonce
        try:
            yield
        finally:
            parameter_helper.get_iso_8061_date, parameter_helper.get_uuid = saved


class _Refused(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code


def sdk_acs3_authorization(
    method: str,
    path: str,
    query: dict[str, str],
    signed_headers: dict[str, str],
    payload_sha256: str,
    ak: str,
    sk: str,
) -> str:
    """The Authorization value the tea SDK computes for exactly these signed headers."""
    request = DaraRequest()
    request.method, request.pathname = method, path
    request.query, request.headers = dict(query), dict(signed_headers)
    return str(Utils.get_authorization(request, ACS3, payload_sha256, ak, sk))


def _acs3_check(req: web.Request, raw: bytes, ak: str, sk: str, token: str | None) -> str:
    auth = req.headers.get("Authorization", "")
    fields = dict(p.split("=", 1) for p in auth.removeprefix(ACS3 + " ").split(","))
    names = fields["SignedHeaders"].split(";")
    signed = {n: (req.host if n == "host" else req.headers[n]) for n in names}
    query = dict(parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True))
    payload = hashlib.sha256(raw).hexdigest()
    if req.headers.get("x-acs-content-sha256") != payload:
        raise _Refused(403, "SignatureDoesNotMatch")
    path = req.rel_url.raw_path
    expected = sdk_acs3_authorization(req.method, path, query, signed, payload, ak, sk)
    if expected != auth or req.headers.get("x-acs-security-token") != token:
        raise _Refused(403, "SignatureDoesNotMatch")
    if token and req.headers.get("x-acs-accesskey-id") != ak:
        raise _Refused(403, "SignatureDoesNotMatch")
    return req.headers["x-acs-signature-nonce"]


def _rpc_check(req: web.Request, raw: bytes, ak: str, sk: str, token: str | None) -> str:
    params = dict(parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True))
    if req.content_type == "application/x-www-form-urlencoded":
        params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    sent = params.pop("Signature")
    expected = Utils.get_rpcsignature(params, req.method, sk)
    if expected != sent or params.get("AccessKeyId") != ak:
        raise _Refused(403, "SignatureDoesNotMatch")
    if params.get("SecurityToken") != token:
        raise _Refused(403, "SignatureDoesNotMatch")
    return params["SignatureNonce"]


def _masked(query: str) -> str:
    pieces = query.split("&")
    return "&".join("SecurityToken=***" if p.startswith("SecurityToken=") else p for p in pieces)


def _app(ak: str, sk: str, token: str | None, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        url.seen.append(
            (req.method, req.rel_url.raw_path, req.rel_url.raw_query_string,
             CIMultiDict(req.headers), raw)
        )  # fmt: skip
        acs3 = req.headers.get("Authorization", "").startswith(ACS3)
        try:
            check = _acs3_check if acs3 else _rpc_check
            nonce = check(req, raw, ak, sk, token)
            if nonce in url.nonces:
                raise _Refused(400, "SignatureNonceUsed")
        except _Refused as exc:
            return web.json_response(
                {"Code": exc.code, "Message": exc.code, "RequestId": f"up-{url.hits}"},
                status=exc.status,
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return web.json_response(
                {"Code": "IncompleteSignature", "Message": "bad", "RequestId": f"up-{url.hits}"},
                status=400,
            )
        url.nonces.add(nonce)
        echo = {
            "scheme": "acs3" if acs3 else "rpc",
            "method": req.method,
            "path": req.rel_url.raw_path,
            "query": _masked(req.rel_url.raw_query_string),
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "access_key": ak,
            "security_token": token is not None,
            "action": req.headers.get("x-acs-action") or req.rel_url.query.get("Action"),
        }
        url.echoes.append(echo)
        return web.json_response({"RequestId": f"up-{url.hits}", "Echo": echo})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def aliyun_upstream(
    real_ak: str, real_sk: str, session_token: str | None = None
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking upstream on 127.0.0.1 until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes, url.nonces, url.seen = 0, [], set(), []
    with app_in_thread(_app(real_ak, real_sk, session_token, url), port, what="aliyun-upstream"):
        yield url
