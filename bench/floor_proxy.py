"""The floors: the cheapest pass-through proxies (no routing, signatures, logging or metrics),
one process each, run as ``python -m bench.floor_proxy [--layer aiohttp|keybroker] PORT
UPSTREAM_PORT``.

``aiohttp`` is the naive proxy anyone would write with aiohttp's server and client; ``keybroker``
is the same pass-through on keybroker's own HTTP layer (:class:`~keybroker.http.server.HttpServer`
and the pooled :class:`~keybroker.http.client.UpstreamClient`).  The CPU the latter costs per
request is the part of keybroker's cost that does not come from routing, signing or logging.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from keybroker.http.client import UpstreamClient
from keybroker.http.messages import Request, StreamResponse
from keybroker.http.netguard import GuardedResolver
from keybroker.http.server import HttpServer

__all__ = ["main"]

_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})


def _aiohttp_app(upstream: str) -> web.Server:
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


async def _serve_aiohttp(port: int, upstream_port: int) -> None:
    runner = web.ServerRunner(_aiohttp_app(f"http://127.0.0.1:{upstream_port}"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def _read_all(request: Request) -> bytes:
    request.send_continue()
    parts = []
    while chunk := await request.content.read(-1):
        parts.append(chunk)
    return b"".join(parts)


def _keybroker_handler(
    client: UpstreamClient, host: str
) -> Callable[[Request], Awaitable[StreamResponse]]:
    async def handle(request: Request) -> StreamResponse:
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
        headers["Host"] = host
        body = await _read_all(request) if request.body_exists else b""
        if body:
            headers["Content-Length"] = str(len(body))
        answer = await client.request(
            request.method, "http", host, request.raw_path, headers, body or None
        )
        async with answer:
            response = StreamResponse(status=answer.status, reason=answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP:
                    response.headers.add(name, value)
            response.content_length = answer.content_length
            await response.prepare(request)
            async for chunk in answer.chunks():
                await response.write(chunk)
            await response.write_eof()
        return response

    return handle


async def _serve_keybroker(port: int, upstream_port: int) -> None:
    resolver = GuardedResolver()
    resolver.trust({"127.0.0.1"})
    client = UpstreamClient(resolver, connect_timeout=10.0, read_timeout=60.0)
    handler = _keybroker_handler(client, f"127.0.0.1:{upstream_port}")
    server = HttpServer(handler, max_head_bytes=64 * 1024, header_timeout=60.0)
    await server.listen(host="127.0.0.1", port=port, backlog=1024)
    await asyncio.Event().wait()


_LAYERS = {"aiohttp": _serve_aiohttp, "keybroker": _serve_keybroker}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.floor_proxy")
    p.add_argument("--layer", choices=sorted(_LAYERS), default="aiohttp")
    p.add_argument("port", type=int)
    p.add_argument("upstream_port", type=int)
    args = p.parse_args()
    serve = _LAYERS[args.layer](args.port, args.upstream_port)
    try:
        import uvloop
    except ImportError:  # the "fast" extra is optional
        asyncio.run(serve)
        return
    uvloop.run(serve)


if __name__ == "__main__":
    main()
