"""Listening sockets, TLS, signals and the event loop for anything :class:`Servable` — the
proxy is the one keybroker serves (this package knows it only through that protocol)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from keybroker.http.server import HttpServer
from keybroker.metrics import instruments as metrics
from keybroker.settings import Config, HttpConfig, address_host

if TYPE_CHECKING:
    from keybroker.server.workerchannel import ConfigChannel

__all__ = [
    "Servable",
    "StartupFailed",
    "bind_socket",
    "listen",
    "parse_address",
    "reload_proxy",
    "run_until_signalled",
    "watch_file",
]

log = logging.getLogger("keybroker.server")


class Servable(Protocol):
    """What :func:`run_until_signalled` serves (:class:`keybroker.proxy.app.Proxy` is one)."""

    @property
    def config(self) -> Config: ...

    @property
    def ports(self) -> list[int]: ...

    async def start(self, *, sock: socket.socket | None = None) -> None: ...

    async def stop(self) -> None: ...

    def reload(self, config: Config) -> None: ...


class StartupFailed(Exception):
    """The proxy could not start (the port, TLS files, the audit directory, a key service):
    the message says what, without internals."""


def parse_address(address: str) -> tuple[str | None, int]:
    """``"host:port"`` or ``":port"`` -> (host or None for all interfaces, port)."""
    sep, port = address.rpartition(":")[1:]
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {address!r} (expected host:port or :port)")
    return (address_host(address) or None), int(port)


def tls_context(http: HttpConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(http.tls.cert_file, http.tls.key_file)
    if http.tls.client_ca_file:  # mutual TLS: only platforms with a certificate from this CA
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=http.tls.client_ca_file)
    return ctx


def bind_socket(
    http: HttpConfig, *, reuse_port: bool = False, port: int | None = None
) -> socket.socket:
    """A listening TCP socket for the configured address (or ``port``), for a worker process.
    ``:port`` listens on every interface (IPv6 and IPv4 where the system allows).  With
    ``reuse_port`` several sockets share the port and the kernel spreads connections over
    them (SO_REUSEPORT): one per worker keeps the cores evenly busy."""
    host, cfg_port = parse_address(http.serving_address)
    port = cfg_port if port is None else port
    if host:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    else:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            addr = ("::", port)
        except OSError:  # no IPv6 here: every IPv4 interface
            sock, addr = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def listen(
    server: HttpServer,
    http: HttpConfig,
    host: str | None,
    port: int | None,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve on a shared listening ``sock`` (worker processes), else on the configured
    address (``host``/``port`` override it); TLS when ``Http.Tls.Enabled``."""
    ctx = tls_context(http) if http.tls.enabled else None
    if sock is not None:
        await server.listen(sock=sock, ssl=ctx, backlog=1024)
        return
    cfg_host, cfg_port = parse_address(http.serving_address)
    await server.listen(
        host=host if host is not None else cfg_host,
        port=port if port is not None else cfg_port,
        ssl=ctx,
        reuse_address=True,
        backlog=1024,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # the "fast" extra is optional
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_until_signalled(
    proxy: Servable,
    reload: Callable[[], Config] | None = None,
    *,
    watch: str | None = None,
    sock: socket.socket | None = None,
    channel: ConfigChannel | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests.  On SIGHUP — and when the
    file ``watch`` changes, or a worker's supervisor sends a config down ``channel`` — call
    ``reload()`` and swap the new config in; an invalid new config is logged and the old one
    keeps serving.  A worker whose ``channel`` closes (its supervisor died) drains and returns.
    Raises :class:`StartupFailed` when the proxy cannot start."""
    loop = _new_loop()
    try:
        loop.run_until_complete(_serve(proxy, reload, watch, sock, channel))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(
    proxy: Servable,
    reload: Callable[[], Config] | None,
    watch: str | None,
    sock: socket.socket | None,
    channel: ConfigChannel | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: reload_proxy(proxy, reload))
        if watch is not None:
            watcher = asyncio.create_task(watch_file(watch, lambda: reload_proxy(proxy, reload)))
    try:
        await proxy.start(sock=sock)
    except OSError as exc:
        await _quietly_stop(proxy)
        raise StartupFailed(f"cannot listen or open a file: {exc.strerror or exc}") from exc
    except Exception as exc:
        await _quietly_stop(proxy)
        raise StartupFailed(f"{type(exc).__name__}: {exc}") from exc
    if channel is not None and reload is not None:

        def parent_gone() -> None:
            log.warning("the supervisor is gone: draining and exiting")
            stop.set()

        channel.follow(lambda: reload_proxy(proxy, reload), parent_gone)
    log.info("listening", extra={"fields": {"ports": proxy.ports}})
    await stop.wait()
    log.info("shutting down: draining in-flight requests")
    if watcher is not None:
        watcher.cancel()
    await proxy.stop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)


async def _quietly_stop(proxy: Servable) -> None:
    with contextlib.suppress(Exception):
        await proxy.stop()


def reload_proxy(proxy: Servable, reload: Callable[[], Config]) -> bool:
    """Load the new config and swap it in; False (old config kept, error logged) if invalid."""
    from keybroker.logs.setup import setup_logging

    try:
        config = reload()
        old_log = proxy.config.log
        proxy.reload(config)
        if config.log != old_log:
            setup_logging(config.log)
    except Exception as exc:
        log.error("config reload rejected; keeping the old config: %s", exc)
        metrics.config_reload("rejected")
        return False
    log.info("config reloaded", extra={"fields": {"accounts": len(config.endpoints)}})
    metrics.config_reload("ok")
    return True


def file_state(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def watch_file(path: str, on_change: Callable[[], object], interval: float = 1.0) -> None:
    """Call ``on_change`` whenever ``path`` is replaced or modified (polled: works for editors,
    atomic renames and mounted config maps alike)."""
    last = file_state(path)
    while True:
        await asyncio.sleep(interval)
        now = file_state(path)
        if now is not None and now != last:
            last = now
            on_change()
