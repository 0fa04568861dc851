"""When an audit line is durable: ``Audit.Sync`` and the group commit of a batch window.

``Audit.Sync`` is ``always`` (each line is fsync'ed before the request goes on), a window in
milliseconds such as ``5ms`` (lines written in the same window share one fsync; each request
still waits for the fsync that covers its line, at most the window plus the fsync), or
``none`` (lines reach the kernel before the request goes on, so they survive the process
being killed, but not a power cut).  :func:`parse_sync` reads the setting; :class:`GroupSync`
makes waiters of one window share one fsync.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

__all__ = ["SYNC_ALWAYS", "GroupSync", "parse_sync"]

#: the window of ``Audit.Sync: always``: no window, one fsync per line
SYNC_ALWAYS = 0.0
_WINDOW = re.compile(r"(\d{1,4})\s*ms\Z")
_MAX_WINDOW_MS = 1000


def parse_sync(text: str) -> float | None:
    """``always`` -> 0.0, ``<N>ms`` (1..1000) -> N/1000 seconds, ``none`` -> ``None``.

    Raises :class:`ValueError` with the accepted forms for anything else."""
    word = text.strip().lower()
    if word in ("", "always"):
        return SYNC_ALWAYS
    if word == "none":
        return None
    match = _WINDOW.fullmatch(word)
    if match is not None and 1 <= int(match.group(1)) <= _MAX_WINDOW_MS:
        return int(match.group(1)) / 1000
    raise ValueError(f"expected 'always', 'none' or a window of 1-{_MAX_WINDOW_MS} ms ('5ms')")


class GroupSync:
    """Waiters of one window share one fsync.

    :meth:`wait` returns once an fsync that started after the call has completed (raises the
    fsync's :class:`OSError` otherwise).  The first waiter of a window starts a task that
    sleeps ``window`` seconds, then runs ``fsync`` in a thread for everyone who waited so far;
    later waiters go to the next window.  Bound to the event loop of its first waiter.
    """

    def __init__(self, window: float, fsync: Callable[[], None]) -> None:
        self.window = window
        self._fsync = fsync
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._task is None:
            self._task = loop.create_task(self._commit())
        await waiter

    async def _commit(self) -> None:
        try:
            await asyncio.sleep(self.window)
            waiters, self._waiters, self._task = self._waiters, [], None
        except asyncio.CancelledError:
            _cancel(self._waiters)
            self._waiters, self._task = [], None
            raise
        try:
            await asyncio.to_thread(self._fsync)
        except asyncio.CancelledError:
            _cancel(waiters)  # never known durable: no waiter may go on as if it were
            raise
        except OSError as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(OSError(exc.errno, exc.strerror))
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _cancel(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        waiter.cancel()
