"""Servers for the replay-cache tests: a real ``redis-server`` on a free loopback port, and the
worker-process body used by the shared-cache tests.

``redis_url`` is a session fixture; import it into a test module with
``redis_url = replay_servers.redis_url``.  However many modules use it, one server runs per
test session (reference-counted), stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests import servers


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    return found


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``redis-server`` (no persistence) until the block ends; yields (URL, process)."""
    port = port or servers.free_port()
    cmd = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no"]
    with servers.running(cmd, servers.port_open(port), what="redis-server") as proc:
        yield f"redis://127.0.0.1:{port}/0", proc


_session: dict[str, Any] = {"users": 0}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis shared by every test module of the session."""
    if _session["users"] == 0:
        stack = contextlib.ExitStack()
        _session["url"], _ = stack.enter_context(redis_server())
        _session["stack"] = stack
    _session["users"] += 1
    try:
        yield str(_session["url"])
    finally:
        _session["users"] -= 1
        if _session["users"] == 0:
            _session.pop("stack").close()


# ------------------------------------------------------------------ shared-cache worker


def shared_worker(path: str, keys: list[bytes], barrier: Any, out: Any) -> None:
    """A worker process: wait for the others, check every key at once, report the accepted."""
    from keybroker.replay.shared import SharedReplayClient

    async def run() -> list[bytes]:
        client = SharedReplayClient(path, timeout=10.0)
        await client.first_use(b"\xff" * 32, 60)  # connect before the race starts
        barrier.wait()
        results = await asyncio.gather(*(client.first_use(k, 60) for k in keys))
        await client.close()
        return [k for k, ok in zip(keys, results, strict=True) if ok]

    out.put(asyncio.run(run()))
