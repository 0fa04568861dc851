"""A minimal upstream run as its own process (so tests can kill and restart it):
``python -m tests.proxy.upstream_server PORT`` answers every request 200 with a small body."""

from __future__ import annotations

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text='{"ok":true}', content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
