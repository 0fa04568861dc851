"""Run a real keybroker proxy in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from keybroker.proxy.app import Proxy
from keybroker.proxy.hooks import Hooks
from keybroker.settings import Config


class ProxyThread:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] | None = None,
        hooks: Hooks | None = None,
        replay: bool = False,
    ) -> None:
        if not replay:
            # Most tests send the same signed request more than once on purpose; the replay
            # cache has its own tests (tests/proxy/test_replay_proxy.py).
            config.security.replay_cache = "off"
        self.proxy = Proxy(config, clock=clock, hooks=hooks)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self.proxy.start("127.0.0.1", 0), self.loop)
        fut.result(timeout=30)
        return f"http://127.0.0.1:{self.proxy.ports[0]}"

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


@contextmanager
def proxy_running(config: Config, **kwargs: Any) -> Iterator[tuple[str, ProxyThread]]:
    pt = ProxyThread(config, **kwargs)
    url = pt.start()
    try:
        yield url, pt
    finally:
        pt.stop()
