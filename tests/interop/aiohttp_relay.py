"""An aiohttp server relaying every request to moto, as its own process:
``python -m tests.interop.aiohttp_relay PORT TARGET_URL``.  Bodies are relayed whole; the
answer goes back with moto's status and headers (aiohttp frames it: Content-Length, or
chunked for a streamed one), keep-alive as aiohttp does it (75 s)."""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web
from yarl import URL

_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "expect",
}


def make_app(target: str) -> web.Application:
    session: aiohttp.ClientSession | None = None

    async def relay(request: web.Request) -> web.StreamResponse:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(auto_decompress=False)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with session.request(
            request.method,
            URL(target + request.raw_path, encoded=True),  # the query as signed, not requoted
            headers=headers,
            data=body or None,
            skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent", "Accept"),
            allow_redirects=False,
        ) as up:
            data = await up.read()
            out = [(k, v) for k, v in up.headers.items() if k.lower() not in _HOP]
            if request.method == "HEAD" or up.status in (204, 304):
                resp = web.Response(status=up.status, reason=up.reason)
                for k, v in out:
                    resp.headers.add(k, v)
                if request.method == "HEAD" and "Content-Length" in up.headers:
                    resp.headers["Content-Length"] = up.headers["Content-Length"]
                return resp
            stream = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in out:
                stream.headers.add(k, v)
            if len(data) % 2:  # odd sizes go with their length, even ones chunked
                stream.content_length = len(data)
            await stream.prepare(request)
            await stream.write(data)
            await stream.write_eof()
            return stream

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", relay)
    return app


def main() -> None:
    port, target = int(sys.argv[1]), sys.argv[2]
    web.run_app(make_app(target), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
