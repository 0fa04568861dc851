"""``keybroker serve``'s supervisor and its workers, seen from outside: workers die with the
supervisor (even SIGKILL), no copy of the config reaches the disk, and a configuration that
cannot start ends ``serve`` with a non-zero status instead of restarting workers forever."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import logscan
from tests.procs import KEYBROKER, children
from tests.servers import free_port, port_open, wait_until

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

REAL_SK = "real" + secrets.token_urlsafe(24)
PROXY_SK = "proxy" + secrets.token_urlsafe(24)
logscan.register(REAL_SK, PROXY_SK)


def _config(tmp: Path, port: int, workers: int, extra: str = "") -> Path:
    log_dir = logscan.log_dir(tmp / "log")
    path = tmp / "config.yml"
    path.write_text(
        f'Http:\n  Address: "127.0.0.1:{port}"\n  Workers: {workers}\n'
        f"Log:\n  Output: {log_dir}\n  Level: info\n{extra}"
        "Endpoints:\n"
        "  - CloudAccountName: a\n    Vendor: aws\n    Credentials:\n"
        f'      Proxy: {{AccessKey: "AKIDPROXYLIFECYCLE01", SecretKey: "{PROXY_SK}"}}\n'
        f'      Real: {{AccessKey: "AKIAREALLIFECYCLE001", SecretKey: "{REAL_SK}"}}\n'
    )
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (reparented, not yet reaped) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _files_holding(secret: str, root: Path) -> list[Path]:
    found = []
    for entry in root.glob("keybroker-*/**/*"):
        try:
            if entry.is_file() and secret.encode() in entry.read_bytes():
                found.append(entry)
        except OSError:
            continue
    return found


def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port, workers=2)
    proc = subprocess.Popen([*KEYBROKER, "serve", "--config", str(cfg)])
    try:
        wait_until(port_open(port), what="keybroker serve")
        wait_until(lambda: len(children(proc.pid)) == 2, what="two workers")
        workers = children(proc.pid)
        # the workers got their config through a pipe: no copy of it is on disk
        assert _files_holding(REAL_SK, Path(tempfile.gettempdir())) == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
        with socket.socket() as probe:  # nobody listens any more
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        for pid in [proc.pid, *children(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _serve_fails(cfg: Path) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    r = subprocess.run(
        [*KEYBROKER, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30
    return r


MISSING_KEK = (
    "KeyService:\n  Enabled: true\n"
    '  KMS: "kms://local?keyFile=./no-such-dir/kek.bin"\n'
    '  Storage: "storage://memory"\n'
)


def test_a_key_service_that_cannot_start_ends_serve_with_workers(tmp_path: Path) -> None:
    cfg = _config(tmp_path, free_port(), workers=2, extra=MISSING_KEK)
    r = _serve_fails(cfg)
    assert r.returncode != 0
    assert f"{cfg}: cannot start" in r.stderr  # the user's file, not a copy of it
    assert "restarting" not in r.stderr
    assert "Traceback" not in r.stderr


def test_a_key_service_that_cannot_start_ends_serve_with_one_process(tmp_path: Path) -> None:
    cfg = _config(tmp_path, free_port(), workers=1, extra=MISSING_KEK)
    r = _serve_fails(cfg)
    assert r.returncode == 1
    assert f"{cfg}: cannot start" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_ends_serve(tmp_path: Path, workers: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = _config(tmp_path, port, workers=workers)
        r = _serve_fails(cfg)
    assert r.returncode == 1
    assert f"{cfg}: cannot start" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_no_internal_command() -> None:
    r = subprocess.run([*KEYBROKER, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "serve" in r.stdout and "_worker" not in r.stdout


def test_check_into_a_closed_pipe_is_quiet() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "config.yml"
    cmd = [*KEYBROKER, "check", "--config", str(example)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head` does once it has read enough: before our output
        err = proc.stderr.read().decode()
        proc.wait(60)
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_serve_prints_a_banner_without_secrets(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port, workers=1)
    proc = subprocess.Popen(
        [*KEYBROKER, "serve", "--config", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(port_open(port), what="keybroker serve")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "keybroker" in err and f"http on 127.0.0.1:{port}, 1 worker" in err
    assert "accounts  a" in err and "audit     OFF" in err
    assert PROXY_SK not in err and REAL_SK not in err


def test_an_omitted_address_means_loopback() -> None:
    from keybroker.config.loader import loads

    cfg = loads("Endpoints: []\n")
    assert cfg.http.address == "127.0.0.1:3888"


LIBRARY = """
import sys
from keybroker.config.loader import load
from keybroker.proxy.app import Proxy

Proxy(load(sys.argv[1])).run()
"""


def test_library_mode_logs_where_the_config_says(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port, workers=1)
    proc = subprocess.Popen(
        [sys.executable, "-c", LIBRARY, str(cfg)], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(port_open(port), what="library proxy")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    log_file = tmp_path / "log" / "key_proxy.log"
    assert '"listening"' in log_file.read_text() or "listening" in log_file.read_text()
    assert "listening" not in err  # not bare lines on stderr
