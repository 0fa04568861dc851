"""A Qiniu-like upstream that checks QBox/Qiniu signatures with the ``qiniu`` SDK's own code.

``qiniu_upstream(real_ak, real_sk)`` yields the base URL of a server on 127.0.0.1 that, for
every request, recomputes the Authorization with ``qiniu.Auth.token_of_request`` (QBox) or
``qiniu.QiniuMacAuth.token_of_request`` (Qiniu) and the *real* secret, over the Host it
received, and answers 200 (with ``X-Reqid``, which the SDK requires, and a JSON echo of what it
saw) on an exact match, else 401.

:func:`checking_upstream` is the vendor-neutral part (a threaded aiohttp server counting hits)
that the other small-vendor upstreams of this test tree reuse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from qiniu import Auth, QiniuMacAuth

from tests.servers import app_in_thread, free_port

__all__ = ["Seen", "UpstreamURL", "checking_upstream", "qiniu_upstream"]


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    host: str
    raw_path: str  # path and query, as sent
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    extra: dict[str, Any] = field(default_factory=dict)


class UpstreamURL(str):
    """The base URL, plus what the server saw: ``hits`` and the ``echoes`` it answered."""

    hits: int
    echoes: list[dict[str, Any]]


#: check(seen) -> the JSON echo to answer 200 with, or None to refuse
Check = Callable[[Seen], dict[str, Any] | None]


def _app(check: Check, url: UpstreamURL, refuse_status: int) -> web.Application:
    async def handle(req: web.Request) -> web.StreamResponse:
        url.hits += 1
        seen = Seen(
            method=req.method,
            host=req.headers.get("Host", ""),
            raw_path=req.raw_path,
            path=req.raw_path.partition("?")[0],
            query=req.rel_url.raw_query_string,
            headers={k: v for k, v in req.headers.items()},
            body=await req.read(),
        )
        try:
            echo = check(seen)
        except Exception:  # the vendor's algorithm choked: that is a refusal, not a crash
            echo = None
        if echo is None:
            return web.json_response(
                {"error": "signature does not match", "code": "SignatureDoesNotMatch"},
                status=refuse_status,
                headers={"X-Reqid": "upstream-refused"},
            )
        url.echoes.append(echo)
        return web.json_response(echo, headers={"X-Reqid": f"upstream-{url.hits}"})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def checking_upstream(check: Check, name: str, refuse_status: int = 401) -> Iterator[UpstreamURL]:
    """Serve ``check`` on a free loopback port, in its own thread, until the block ends."""
    port = free_port()
    url = UpstreamURL(f"http://127.0.0.1:{port}")
    url.hits, url.echoes = 0, []
    with app_in_thread(_app(check, url, refuse_status), port, what=f"{name}-upstream"):
        yield url


def _canonical(name: str) -> str:
    # The SDK only collects X-Qiniu-* headers spelled that way (it canonicalises afterwards).
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def qiniu_check(real_ak: str, real_sk: str) -> Check:
    def check(seen: Seen) -> dict[str, Any] | None:
        auth = seen.headers.get("Authorization", "")
        url = f"http://{seen.host}{seen.raw_path}"
        ctype = seen.headers.get("Content-Type")
        body = seen.body.decode("utf-8") if seen.body else None
        if auth.startswith("QBox "):
            expected = "QBox " + Auth(real_ak, real_sk).token_of_request(url, body, ctype)
        elif auth.startswith("Qiniu "):
            mac = QiniuMacAuth(real_ak, real_sk)
            x_headers = {_canonical(k): v for k, v in seen.headers.items()}
            token = mac.token_of_request(seen.method, seen.host, url,
                                         mac.qiniu_headers(x_headers), ctype, body)  # fmt: skip
            expected = f"Qiniu {token}"
        else:
            return None
        if auth != expected:
            return None
        return {
            "method": seen.method,
            "path": seen.path,
            "query": seen.query,
            "scheme": auth.split(" ")[0],
            "access_key": auth.split(" ")[1].split(":")[0],
            "body": seen.body.decode("utf-8", "replace"),
            "x_qiniu_date": seen.headers.get("X-Qiniu-Date"),
        }

    return check


@contextmanager
def qiniu_upstream(real_ak: str, real_sk: str) -> Iterator[UpstreamURL]:
    """Serve a Qiniu-signature-checking upstream on 127.0.0.1 until the block ends."""
    with checking_upstream(qiniu_check(real_ak, real_sk), "qiniu") as url:
        yield url
