"""A plain upstream that records every request it receives and answers 200 (or streams a
large body on ``GET /big/<n>``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.servers import app_in_thread, free_port

STS_ANSWER = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    "<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/recorded</Arn>"
    "<UserId>AIDAEXAMPLE</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
    "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
)


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    url: str
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def recording_upstream(
    delay: float = 0.0, port: int | None = None, empty_status: int | None = None
) -> Iterator[Recorder]:
    """``empty_status``: answer every request with that status and no body (what S3 answers
    a DeleteObject with: 204)."""
    port = port or free_port()
    rec = Recorder(f"http://127.0.0.1:{port}")

    async def handle(req: web.Request) -> web.StreamResponse:
        body = await req.read()
        rec.seen.append(Seen(req.method, req.raw_path, dict(req.headers), body))
        if delay:
            await asyncio.sleep(delay)
        if empty_status is not None:
            return web.Response(status=empty_status)
        if req.path.startswith("/big/"):
            n = int(req.path.rsplit("/", 1)[1])
            resp = web.StreamResponse(headers={"Content-Length": str(n)})
            await resp.prepare(req)
            block = b"x" * 65536
            sent = 0
            while sent < n:
                chunk = block[: min(len(block), n - sent)]
                await resp.write(chunk)
                sent += len(chunk)
            await resp.write_eof()
            return resp
        if b"GetCallerIdentity" in body or "GetCallerIdentity" in req.query_string:
            return web.Response(text=STS_ANSWER, content_type="text/xml")
        return web.json_response({"ok": True, "n": len(rec.seen)}, headers={"X-Upstream": "yes"})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    with app_in_thread(app, port, what="upstream"):
        yield rec
