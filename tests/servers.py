"""Start real servers for the tests: free loopback port, own process group, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent

# The programs of other projects these helpers start. ``scripts/test --fast`` sets
# KEYBROKER_TESTS_NO_EMULATORS and deselects the tests marked ``emulator``: one that starts an
# emulator there was not marked (tests/conftest.py says how a test gets the marker).
EMULATORS = (
    "moto_server",
    "redis-server",
    "nginx",
    "bao",
    "pykmip-server",
    "azurite-blob",
    "fake-gcs-server",
    "softhsm2-util",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {timeout}s")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status < 500)

    return check


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return check


@contextlib.contextmanager
def running(
    cmd: list[str],
    ready: Callable[[], bool],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    what: str = "server",
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in a new session until the block ends; wait for ``ready()`` first."""
    refuse_emulator_in_fast_lane(cmd[0])
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        wait_until(lambda: proc.poll() is None and ready(), what=what)
        yield proc
    finally:
        stop(proc)
        if log:
            out.close()  # type: ignore[union-attr]


def refuse_emulator_in_fast_lane(program: str) -> None:
    name = Path(program).name
    if os.environ.get("KEYBROKER_TESTS_NO_EMULATORS") and any(
        name == e or name.startswith(f"{e}-") for e in EMULATORS
    ):
        raise RuntimeError(
            f"{name} started in the fast lane: mark the test @pytest.mark.emulator, or have it "
            "use an emulator fixture (tests/conftest.py EMULATOR_FIXTURES)"
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (S3, KMS, IAM, STS) with auth enforcement off; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        http_ok(f"{url}/moto-api/"),
        what="moto_server",
    ):
        yield url


def moto_api(url: str, path: str, body: bytes = b"") -> None:
    req = urllib.request.Request(
        f"{url}/moto-api/{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


@contextlib.contextmanager
def moto_enforcing() -> Iterator[tuple[str, str, str]]:
    """A moto server that ENFORCES SigV4 for an IAM user made here.

    Yields (base URL, real access key id, real secret key): only requests signed with that
    secret succeed.  Auth is switched on with ``POST /moto-api/reset-auth`` body ``0``.
    """
    import boto3

    with moto_server() as url:
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="keybroker-real")
        iam.put_user_policy(
            UserName="keybroker-real",
            PolicyName="all",
            PolicyDocument=(
                '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
                '"Action":["s3:*","kms:*","sts:*","ec2:*"],"Resource":"*"}]}'
            ),
        )
        key = iam.create_access_key(UserName="keybroker-real")["AccessKey"]
        moto_api(url, "reset-auth", b"0")
        yield url, key["AccessKeyId"], key["SecretAccessKey"]


@contextlib.contextmanager
def app_in_thread(app: Any, port: int, *, what: str = "server") -> Iterator[None]:
    """Serve the aiohttp ``app`` on 127.0.0.1:``port`` from a thread with its own event loop
    until the block ends (for upstreams and fakes the tests talk to over real sockets)."""
    import asyncio
    import threading

    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name=what, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"the {what} did not start")
    try:
        yield
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
