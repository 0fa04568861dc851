"""Several worker processes sharing one listening socket (``Http.Workers``).

The supervisor binds one listening socket per worker on the same port (SO_REUSEPORT), starts
``N`` workers (``python -m keybroker _worker``, each handed its socket's file descriptor and a
pipe that carries the config, see :mod:`keybroker.server.workerchannel`), and owns what they must
share: the replay cache (a UNIX socket server, see :mod:`keybroker.replay.shared`) and the metrics
directory.  It restarts a worker that dies after it started serving, sends every config it
accepts (on SIGHUP or a change of the file, after checking it itself) to every worker, and on
SIGTERM/SIGINT lets them drain and exits 0.  A worker that cannot start (exit
``EX_CONFIG``) stops the server with exit status 1: restarting it would fail the same way.
When the supervisor dies, however it dies, its workers see their config pipe close and exit.

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

from keybroker.server.listen import bind_socket, watch_file
from keybroker.server.workerchannel import EX_CONFIG, write_frame
from keybroker.settings import Config

__all__ = ["Supervisor", "worker_count"]

log = logging.getLogger("keybroker.supervisor")

RESTART_BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)


def worker_count(configured: int) -> int:
    """``Http.Workers``: 0 means one per core."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


class Supervisor:
    """Runs and supervises the workers of one server (see the module docstring)."""

    def __init__(self, config_path: str, config: Config, load: Callable[[str], Config]) -> None:
        """``load(text)`` parses and checks a config file's text (as ``config_load.loads``
        with the file named in messages)."""
        self.config_path = os.path.abspath(config_path)
        self.config = config
        self.load = load
        self.count = worker_count(config.http.workers)
        self.workers: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._state_dir = Path(tempfile.mkdtemp(prefix="keybroker-"))  # mode 0700
        self._extra_env: dict[str, str] = {}
        # Workers get the last config the supervisor accepted, never the file being edited
        # (a worker restarted while the file holds a broken config must still come up), and
        # get it through a pipe: no copy of it is written to disk.
        self._text = _read_text(self.config_path)
        self._pipes: dict[int, int] = {}  # slot -> write end of its config pipe
        self._fatal = False
        self._stop = asyncio.Event()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0), or until a worker cannot start (1); 1 also when
        the listening sockets cannot be bound (the reason on stderr, no traceback)."""
        try:
            return asyncio.run(self._main())
        except OSError as exc:
            print(
                f"{self.config_path}: cannot start: cannot listen: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        finally:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    async def _main(self) -> int:
        # one listening socket per worker on the same port (SO_REUSEPORT): the kernel spreads
        # connections evenly, and a restarting worker's connections wait in its backlog
        first = bind_socket(self.config.http, reuse_port=True)
        port = int(first.getsockname()[1])
        socks = [first] + [
            bind_socket(self.config.http, reuse_port=True, port=port) for _ in range(self.count - 1)
        ]
        stop = self._stop
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
        for fd in self._pipes.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        if shared is not None:
            await shared()
        return 1 if self._fatal else 0

    async def _start_shared_state(self) -> Callable[[], Awaitable[None]] | None:
        """The replay cache shared by the workers, owned here (when the config uses the
        default in-memory cache) — and the directory where workers publish metrics."""
        metrics_dir = self._state_dir / "metrics"
        metrics_dir.mkdir()
        self._extra_env["KEYBROKER_METRICS_DIR"] = str(metrics_dir)
        if self.config.security.replay_cache != "memory":
            return None
        try:
            from keybroker.replay.shared import SharedReplayServer
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
        """Run worker ``slot``; restart it (with back-off) until the server stops — unless it
        could not start at all (``EX_CONFIG``), which stops the server."""
        failures = 0
        while not self._stopping:
            read_end, write_end = os.pipe()
            os.set_inheritable(read_end, True)
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "keybroker",
                    "_worker",
                    "--fd",
                    str(fd),
                    "--config-fd",
                    str(read_end),
                    "--config-name",
                    self.config_path,
                    pass_fds=(fd, read_end),
                    env={**os.environ, **self._extra_env, "KEYBROKER_WORKER": str(slot)},
                )
            finally:
                os.close(read_end)
            self._pipes[slot] = write_end
            self.workers[slot] = proc
            self._send(slot)
            code = await proc.wait()
            del self.workers[slot]
            with contextlib.suppress(OSError):
                os.close(self._pipes.pop(slot))
            if self._stopping:
                return
            if code == EX_CONFIG:
                log.error("worker %d could not start; stopping (see the error above)", slot)
                self._fatal = True
                self._stop.set()
                return
            failures += 1
            delay = RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF)) - 1]
            log.error("worker %d exited with %s; restarting in %.1f s", slot, code, delay)
            await asyncio.sleep(delay)

    def _send(self, slot: int) -> None:
        """Hand worker ``slot`` the current config (a dead worker's pipe is ignored: it is
        replaced with a fresh one when the worker restarts)."""
        fd = self._pipes.get(slot)
        if fd is None:
            return
        try:
            write_frame(fd, self._text)
        except OSError as exc:
            log.warning("worker %d did not take the config: %s", slot, exc.strerror)

    def _reload(self) -> None:
        """Check the new config here (one clear log line if it is bad), then tell workers."""
        try:
            text = _read_text(self.config_path)
            self.config = self.load(text)
        except Exception as exc:
            log.error("config reload rejected; workers keep the old config: %s", exc)
            return
        self._text = text
        for slot in list(self._pipes):
            self._send(slot)
        log.info("config reload sent to %d workers", len(self._pipes))


def _read_text(path: str) -> str:
    """The config file's text, as the workers will parse it (``load`` checked it)."""
    return Path(path).read_bytes().decode("utf-8", "replace").removeprefix("\ufeff")
