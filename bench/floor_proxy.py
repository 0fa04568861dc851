"""The floor: the cheapest aiohttp pass-through proxy (no routing, signatures, logging or
metrics), run as ``python -m bench.floor_proxy PORT UPSTREAM_PORT``.

keybroker forwards with the same aiohttp server and client, so the CPU this costs per request
is the part of keybroker's cost that does not come from keybroker's own code.
"""

from __future__ import annotations

import sys

import aiohttp
from aiohttp import web

__all__ = ["main"]

_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})


def _app(upstream: str) -> web.Server:
    session: aiohttp.ClientSession | None = None

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        nonlocal session
        if session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=256)
            session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=body or None
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP:
                    response.headers[name] = value
            response.content_length = answer.content_length
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(65536):
                await response.write(chunk)
            await response.write_eof()
            return response

    return web.Server(handle, access_log=None)


async def _serve(port: int, upstream_port: int) -> None:
    import asyncio

    runner = web.ServerRunner(_app(f"http://127.0.0.1:{upstream_port}"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop
    except ImportError:  # the "fast" extra is optional
        import asyncio

        asyncio.run(_serve(port, upstream_port))
        return
    uvloop.run(_serve(port, upstream_port))


if __name__ == "__main__":
    main()
