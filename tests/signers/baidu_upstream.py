"""A tiny Baidu-AI-Cloud-like upstream that checks signatures with the SDK's own algorithm.

``baidu_upstream(real_ak, real_sk, token)`` runs an aiohttp server on a free loopback port (in
its own thread) and yields its base URL.  For every request it takes the authentication string
(``Authorization`` header, or ``authorization`` query parameter), recomputes it with
``baidubce.auth.bce_v1_signer.sign`` and the *real* secret at the string's own timestamp,
validity period and header list — over the headers, raw path and query it received — and
answers:

* 200 with a JSON echo ``{method, path, query, body_sha256, access_key, security_token}`` when
  the strings match exactly, the body matches a Content-MD5 it carries, and the session token
  (header or query) is the real one;
* 403 with BCE's ``SignatureDoesNotMatch`` error body otherwise.

The yielded URL is a ``str`` with ``.hits`` and ``.echoes``.  ``sdk_sign`` is the client
side: what ``baidubce.http.bce_http_client.send_request`` sends, as a ``SigningRequest``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote_to_bytes

from aiohttp import web
from baidubce import utils
from baidubce.auth import bce_v1_signer
from baidubce.auth.bce_credentials import BceCredentials
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.signers.base import SigningRequest
from tests.servers import free_port
from tests.signers.huawei_upstream import UpstreamURL, serve

__all__ = ["UpstreamURL", "baidu_upstream", "bce_time", "sdk_sign"]

# The SDK logs request headers (session tokens included) and derived signing keys at DEBUG;
# the test run records every log line and scans it for secrets.
logging.getLogger("baidubce").setLevel(logging.INFO)


def bce_time(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sdk_sign(
    cred: Credential,
    *,
    method: str = "POST",
    host: str = "bcc.bj.baidubce.com",
    path: str = "/v2/instance",
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: str = '{"instanceType": "N3"}',
    when: datetime | None = None,
    expiration: int = 1800,
    headers_to_sign: list[str] | None = None,
) -> tuple[SigningRequest, bytes]:
    """Sign as the SDK's HTTP client does (Host, Content-Length, x-bce-date, User-Agent, the
    session token header); the wire path and query are the SDK's own encodings."""
    timestamp = bce_time(when)
    raw = {"user-agent": "bce-sdk-python/0.9", "host": host,
           "content-type": "application/json; charset=utf-8",
           "content-length": str(len(body.encode())), "x-bce-date": timestamp,
           **(headers or {})}  # fmt: skip
    if cred.access_token:
        raw["x-bce-security-token"] = cred.access_token.reveal()
    bparams = {k.encode(): v.encode() for k, v in (params or {}).items()}
    wire_path = utils.normalize_string(path, False)
    auth = bce_v1_signer.sign(
        BceCredentials(cred.access_key.encode(), cred.secret_key.reveal_bytes()),
        method.encode(),
        wire_path,
        {k.encode(): v.encode() for k, v in raw.items()},
        bparams,
        int(datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()),
        expiration,
        [h.encode() for h in headers_to_sign] if headers_to_sign else None,
    )
    query = utils.get_canonical_querystring(bparams, False).decode()
    signed = CIMultiDict({**raw, "Authorization": auth.decode()})
    return SigningRequest(method, host, wire_path.decode(), query, signed), body.encode()


def _canonical_path(raw: str) -> bytes:
    # The SDK signs the path it sends, already normalised; a server decodes and normalises.
    return b"/".join(utils.normalize_string(unquote_to_bytes(seg)) for seg in raw.split("/"))


def _auth_string(req: web.Request) -> tuple[str, bool]:
    if "Authorization" in req.headers:
        return req.headers["Authorization"], False
    return req.rel_url.query["authorization"], True


def _check(req: web.Request, body: bytes, ak: str, sk: str, token: str | None) -> bool:
    auth, in_query = _auth_string(req)
    _, claimed_ak, timestamp, expiration, names, _ = auth.split("/")
    pairs = parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True)
    params = {k.encode(): v.encode() for k, v in pairs if not (in_query and k == "authorization")}
    headers = {k.lower().encode(): v.encode() for k, v in req.headers.items()}
    headers[b"host"] = req.host.encode()
    epoch = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    expected = bce_v1_signer.sign(
        BceCredentials(ak.encode(), sk.encode()),
        req.method.encode(),
        _canonical_path(req.rel_url.raw_path),
        headers,
        params,
        int(epoch),
        int(expiration),
        [n.encode() for n in names.split(";")] if names else None,
    ).decode()
    md5 = req.headers.get("Content-MD5")
    if md5 is not None and base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
        return False
    sent_token = req.headers.get("x-bce-security-token") or dict(pairs).get("x-bce-security-token")
    return claimed_ak == ak and expected == auth and sent_token == token


def _app(ak: str, sk: str, token: str | None, url: UpstreamURL) -> web.Application:
    async def handle(req: web.Request) -> web.Response:
        url.hits += 1
        raw = await req.read()
        try:
            ok = _check(req, raw, ak, sk, token)
        except (KeyError, ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            error = {"code": "SignatureDoesNotMatch", "message": "signature mismatch",
                     "requestId": f"upstream-{url.hits}"}  # fmt: skip
            return web.json_response(error, status=403)
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
def baidu_upstream(
    real_ak: str, real_sk: str, session_token: str | None = None
) -> Iterator[UpstreamURL]:
    """Serve a signature-checking upstream on 127.0.0.1 until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with serve(_app(real_ak, real_sk, session_token, url), url, port):
        yield url
