"""Several worker processes sharing one listening socket (``Http.Workers``).

The supervisor binds one listening socket per worker on the same port (SO_REUSEPORT), starts
``N`` workers (``python -m keybroker _worker``, each handed its socket's file descriptor and
the config path), and owns what they must share: the
replay cache (a UNIX socket server, see :mod:`keybroker.replay`) and the metrics directory.
It restarts a worker that dies, forwards SIGHUP (and config-file changes, after checking the
new file itself) to every worker, and on SIGTERM/SIGINT lets them drain and exits 0.

Workers are fresh interpreters, not forks: nothing (threads, event loops, open clients) is
inherited by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from keybroker.config import Config
from keybroker.serving import bind_socket, watch_file

__all__ = ["Supervisor", "worker_count"]

log = logging.getLogger("keybroker.supervisor")

RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


def worker_count(configured: int) -> int:
    """``Http.Workers``: 0 means one per core."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


class Supervisor:
    """Runs and supervises the workers of one server (see the module docstring)."""

    def __init__(self, config_path: str, config: Config, load: Callable[[], Config]) -> None:
        self.config_path = os.path.abspath(config_path)
        self.config = config
        self.load = load
        self.count = worker_count(config.http.workers)
        self.workers: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._state_dir = Path(tempfile.mkdtemp(prefix="keybroker-"))  # mode 0700
        self._extra_env: dict[str, str] = {}
        # Workers read the last config the supervisor accepted, never the file being edited:
        # a worker restarted while the file holds a broken config must still come up.
        self._snapshot = self._state_dir / "config.yml"
        self._save_snapshot()

    def run(self) -> int:
        try:
            return asyncio.run(self._main())
        finally:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    def _save_snapshot(self) -> None:
        data = Path(self.config_path).read_bytes()
        tmp = self._snapshot.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self._snapshot)

    async def _main(self) -> int:
        # one listening socket per worker on the same port (SO_REUSEPORT): the kernel spreads
        # connections evenly, and a restarting worker's connections wait in its backlog
        first = bind_socket(self.config.http, reuse_port=True)
        port = int(first.getsockname()[1])
        socks = [first] + [
            bind_socket(self.config.http, reuse_port=True, port=port) for _ in range(self.count - 1)
        ]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        shared = await self._start_shared_state()
        watcher = asyncio.create_task(watch_file(self.config_path, self._reload))
        keepers = [
            asyncio.create_task(self._keep_worker(slot, socks[slot].fileno()))
            for slot in range(self.count)
        ]
        log.info("supervising %d workers", self.count)
        await stop.wait()
        self._stopping = True
        watcher.cancel()
        for sock in socks:
            sock.close()  # no new connections; workers finish what they have
        for proc in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = self.config.http.shutdown_timeout + 10
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*keepers, return_exceptions=True), deadline)
        for proc in list(self.workers.values()):  # past the deadline: no more waiting
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if shared is not None:
            await shared()
        return 0

    async def _start_shared_state(self) -> Callable[[], Awaitable[None]] | None:
        """The replay cache shared by the workers, owned here (when the config uses the
        default in-memory cache) — and the directory where workers publish metrics."""
        metrics_dir = self._state_dir / "metrics"
        metrics_dir.mkdir()
        self._extra_env["KEYBROKER_METRICS_DIR"] = str(metrics_dir)
        if self.config.security.replay_cache != "memory":
            return None
        try:
            from keybroker.replay import SharedReplayServer
        except ImportError:  # pragma: no cover - the replay module ships with the package
            return None
        path = str(self._state_dir / "replay.sock")
        server = SharedReplayServer(path)
        await server.start()
        self._extra_env["KEYBROKER_REPLAY_SOCKET"] = path

        async def close() -> None:
            await server.close()

        return close

    async def _keep_worker(self, slot: int, fd: int) -> None:
        """Run worker ``slot``; restart it (with back-off) until the server stops."""
        failures = 0
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "keybroker",
                "_worker",
                "--fd",
                str(fd),
                "--config",
                str(self._snapshot),
                pass_fds=(fd,),
                env={**os.environ, **self._extra_env, "KEYBROKER_WORKER": str(slot)},
            )
            self.workers[slot] = proc
            code = await proc.wait()
            del self.workers[slot]
            if self._stopping:
                return
            failures += 1
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF)) - 1]
            log.error("worker %d exited with %s; restarting in %.1f s", slot, code, delay)
            await asyncio.sleep(delay)

    def _reload(self) -> None:
        """Check the new config here (one clear log line if it is bad), then tell workers."""
        try:
            self.config = self.load()
            self._save_snapshot()
        except Exception as exc:
            log.error("config reload rejected; workers keep the old config: %s", exc)
            return
        for proc in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGHUP)
        log.info("config reload sent to %d workers", len(self.workers))
