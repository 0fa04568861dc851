"""``keybroker serve`` with several workers: shared port, hot reload (file change and SIGHUP),
invalid configs rejected, dead workers restarted, graceful exit."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import logscan
from tests.procs import children
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream
from tests.servers import free_port, port_open, wait_until

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

STS = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"


def _account(name: str, ak: str, sk: str, upstream: str) -> str:
    return f"""
  - CloudAccountName: "{name}"
    Vendor: aws
    Upstream: "{upstream}"
    Credentials:
      Proxy: {{AccessKey: "{ak}", SecretKey: "{sk}"}}
      Real: {{AccessKey: "AKIAREALWORKERS00001", SecretKey: "{REAL_SK}"}}"""


REAL_SK = secrets.token_urlsafe(24)
SK_A, SK_B = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(REAL_SK, SK_A, SK_B)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic, as a config-management tool would


_SEQ = iter(range(1_000_000))


def _call(url: str, account: str, ak: str, sk: str) -> int:
    # a new request every time: the replay cache (on by default) refuses a repeated one
    uri = f"{STS}&n={next(_SEQ)}"
    signed = sign_aws("GET", uri, ak=ak, sk=sk, service="sts")
    return send(url, "GET", uri, signed, account=account).status


def test_workers_reload_restart_and_drain(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "config.yml"
    log_dir = logscan.log_dir(tmp_path / "log")
    head = (
        f'Http:\n  Address: "127.0.0.1:{port}"\n  Workers: 2\n'
        f"Log:\n  Output: {log_dir}\n  Level: info\nEndpoints:"
    )
    with recording_upstream(delay=0.2) as up:
        a = _account("a", "AKIDPROXYWORKERA0001", SK_A, up.url)
        b = _account("b", "AKIDPROXYWORKERB0001", SK_B, up.url)
        _write(cfg, head + a)
        proc = subprocess.Popen([sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)])
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(port_open(port), what="keybroker serve")
            wait_until(lambda: len(children(proc.pid)) == 2, what="two workers")
            assert _call(url, "a", "AKIDPROXYWORKERA0001", SK_A) == 200
            assert _call(url, "b", "AKIDPROXYWORKERB0001", SK_B) == 404

            # a request in flight while the config changes on disk
            results: list[int] = []
            t = threading.Thread(
                target=lambda: results.append(_call(url, "a", "AKIDPROXYWORKERA0001", SK_A))
            )
            t.start()
            _write(cfg, head + a + b)
            wait_until(lambda: _call(url, "b", "AKIDPROXYWORKERB0001", SK_B) == 200, what="reload")
            t.join(10)
            assert results == [200]
            # every worker has the new account
            assert all(_call(url, "b", "AKIDPROXYWORKERB0001", SK_B) == 200 for _ in range(6))

            # an invalid config is refused; the old one keeps serving (also on SIGHUP)
            _write(cfg, head + a + b + "\n  - CloudAccountName: broken\n")
            time.sleep(2.5)
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert _call(url, "b", "AKIDPROXYWORKERB0001", SK_B) == 200

            # a worker that dies is replaced; service continues meanwhile
            victim = children(proc.pid)[0]
            os.kill(victim, signal.SIGKILL)
            assert all(_call(url, "a", "AKIDPROXYWORKERA0001", SK_A) == 200 for _ in range(4))
            wait_until(
                lambda: len(children(proc.pid)) == 2 and victim not in children(proc.pid),
                what="worker restarted",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    assert code == 0
    text = (log_dir / "key_proxy.log").read_text()
    assert "config reload rejected" in text
    assert SK_A not in text and REAL_SK not in text
