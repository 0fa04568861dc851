"""Listening sockets, TLS, signals and the event loop for :class:`keybroker.proxy.Proxy`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from keybroker.config import Config, HttpConfig

if TYPE_CHECKING:
    from keybroker.proxy import Proxy

__all__ = ["make_site", "parse_address", "run_until_signalled"]

log = logging.getLogger("keybroker.server")


def parse_address(address: str) -> tuple[str | None, int]:
    """``"host:port"`` or ``":port"`` -> (host or None for all interfaces, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {address!r} (expected host:port or :port)")
    host = host.strip("[]")
    return (host or None), int(port)


def tls_context(http: HttpConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(http.tls.cert_file, http.tls.key_file)
    if http.tls.client_ca_file:  # mutual TLS: only platforms with a certificate from this CA
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=http.tls.client_ca_file)
    return ctx


def make_site(
    runner: web.BaseRunner, http: HttpConfig, host: str | None, port: int | None
) -> web.TCPSite:
    """HTTPS on ``Tls.Address`` when TLS is enabled (as key-proxy), else HTTP on ``Address``."""
    address = http.tls.address if http.tls.enabled else http.address
    cfg_host, cfg_port = parse_address(address)
    ctx = tls_context(http) if http.tls.enabled else None
    return web.TCPSite(
        runner,
        host if host is not None else cfg_host,
        port if port is not None else cfg_port,
        ssl_context=ctx,
        reuse_address=True,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # the "fast" extra is optional
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_until_signalled(proxy: Proxy, reload: Callable[[], Config] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; on SIGHUP call ``reload()`` and swap the config in (an
    invalid new config is logged and the old one keeps serving)."""
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(proxy, reload))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(proxy: Proxy, reload: Callable[[], Config] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(proxy, reload))
    await proxy.start()
    log.info("listening", extra={"fields": {"ports": proxy.ports}})
    await stop.wait()
    log.info("shutting down: draining in-flight requests")
    await proxy.stop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)


def _reload(proxy: Proxy, reload: Callable[[], Config]) -> None:
    try:
        config = reload()
    except Exception as exc:
        log.error("config reload rejected; keeping the old config: %s", exc)
        return
    proxy.reload(config)
    log.info("config reloaded", extra={"fields": {"accounts": len(config.endpoints)}})
