"""An operator's first hour, end to end: ``keybroker init`` writes a config with sealed
credentials, ``keybroker serve`` runs it, ``keybroker try`` sends a signed request through it
to a verifying upstream (moto with signature enforcement: the real key must be the one the
request arrives signed with) — natively and in key-proxy mode — and prints what it did."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import logscan
from tests.procs import KEYBROKER, run_keybroker
from tests.servers import free_port, port_open, wait_until

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast


def _proxy_credentials(stdout: str, account: str) -> tuple[str, str]:
    found = re.search(rf"{account} \(\w+\): AccessKey=(\S+), SecretKey=(\S+)", stdout)
    assert found, stdout
    return found.group(1), found.group(2)


def _point_at(config: Path, upstream: str, port: int) -> None:
    """What an operator does for an S3-compatible store or, here, the local moto."""
    text = config.read_text()
    text = text.replace('    Vendor: "aws"\n', f'    Vendor: "aws"\n    Upstream: "{upstream}"\n')
    text = text.replace("127.0.0.1:3888", f"127.0.0.1:{port}")
    config.write_text(text)


@pytest.fixture
def served(tmp_path: Path, moto_auth: tuple[str, str, str]) -> Iterator[tuple[Path, str]]:
    moto_url, real_ak, real_sk = moto_auth
    r = run_keybroker(
        "init",
        str(tmp_path / "kb"),
        "--non-interactive",
        "--account",
        "aws-demo:aws",
        stdin=f"{real_ak} {real_sk}\n",
    )
    assert r.returncode == 0, r.stderr
    config = tmp_path / "kb" / "config.yml"
    _, proxy_sk = _proxy_credentials(r.stdout, "aws-demo")
    logscan.register(proxy_sk)
    logscan.log_dir(tmp_path / "kb" / "log")
    port = free_port()
    _point_at(config, moto_url, port)
    check = run_keybroker("check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([*KEYBROKER, "serve", "--config", str(config)])
    try:
        wait_until(port_open(port), what="keybroker serve")
        yield config, real_ak
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_init_writes_no_secret_in_clear(tmp_path: Path) -> None:
    real_sk = "Real" + os.urandom(12).hex()
    logscan.register(real_sk)
    r = run_keybroker(
        "init",
        str(tmp_path / "kb"),
        "--non-interactive",
        "--account",
        "a:aws",
        "--account",
        "v:volcengine",
        stdin=f"AKIAREALINIT00000001 {real_sk}\nAKLTREALINIT0000001 {real_sk}x\n",
    )
    assert r.returncode == 0, r.stderr
    root = tmp_path / "kb"
    for path in root.rglob("*"):
        if path.is_file():
            assert real_sk.encode() not in path.read_bytes(), path
            if path.suffix != ".pub":  # the audit's public key is for auditors
                assert path.stat().st_mode & 0o077 == 0, path  # no group or other access
    assert (root.stat().st_mode & 0o077) == 0
    assert real_sk not in r.stdout + r.stderr
    text = (root / "config.yml").read_text()
    assert text.count("${sealed:kb1.") == 4  # both accounts' proxy and real secrets
    assert 'Address: "127.0.0.1:3888"' in text and "Enabled: true" in text
    # as safe as keybroker knows how: check --strict has nothing to say
    strict = run_keybroker("check", "--strict", "--config", str(root / "config.yml"))
    assert strict.returncode == 0, strict.stderr
    assert "warning" not in strict.stderr and "error" not in strict.stderr
    _, proxy_sk = _proxy_credentials(r.stdout, "a")
    assert proxy_sk not in text and len(proxy_sk) >= 40
    # never over an existing setup
    again = run_keybroker(
        "init", str(root), "--non-interactive", "--account", "a:aws", stdin="x y\n"
    )
    assert again.returncode == 2 and "refusing" in again.stderr


def test_init_refuses_bad_input_precisely(tmp_path: Path) -> None:
    r = run_keybroker("init", str(tmp_path / "a"), "--non-interactive", "--account", "a:awz")
    assert r.returncode == 2 and "unknown vendor 'awz'" in r.stderr
    r = run_keybroker(
        "init", str(tmp_path / "b"), "--non-interactive", "--account", "a:aws", stdin="x\n"
    )
    assert r.returncode == 2 and "expected one line of stdin with 2 values" in r.stderr
    assert not (tmp_path / "b").exists()  # nothing written


@pytest.mark.parametrize("mode", ["native", "keyproxy"])
def test_try_proves_the_whole_path(served: tuple[Path, str], mode: str) -> None:
    config, _real_ak = served
    r = run_keybroker("try", "--config", str(config), "--account", "aws-demo", "--mode", mode)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<- 200 OK" in r.stdout
    assert "GetCallerIdentityResponse" in r.stdout  # answered by moto, checking the real key
    assert "answered by the vendor" in r.stdout


def test_try_prints_a_curl_that_works(served: tuple[Path, str]) -> None:
    config, _ = served
    r = run_keybroker("try", "--config", str(config), "--mode", "keyproxy", "--curl")
    assert r.returncode == 0, r.stderr
    command = r.stdout.split("   # valid")[0]
    assert command.startswith("curl ") and "X-Mcdn-Origin-Uri" in command
    out = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    assert "GetCallerIdentityResponse" in out.stdout, out.stdout + out.stderr


TRY_REAL = "AKIAREALTRY00000001 real-secret-for-try\n"  # a real AccessKey and SecretKey


def test_try_explains_a_refusal(served: tuple[Path, str], tmp_path: Path) -> None:
    config, _ = served
    other = tmp_path / "other.yml"  # a config whose proxy secret the server does not have
    text = config.read_text()
    init = run_keybroker(
        "init",
        str(tmp_path / "kb2"),
        "--non-interactive",
        "--account",
        "x:aws",
        stdin=TRY_REAL,
    )
    assert init.returncode == 0
    fresh = (tmp_path / "kb2" / "config.yml").read_text()
    fresh_ak, _ = _proxy_credentials(init.stdout, "x")
    port = re.search(r'Address: "127\.0\.0\.1:(\d+)"', text)
    assert port
    other.write_text(fresh.replace("127.0.0.1:3888", f"127.0.0.1:{port.group(1)}"))
    r = run_keybroker("try", "--config", str(other))
    assert r.returncode == 1
    assert "refused by keybroker" in r.stdout and "check:" in r.stdout
    assert fresh_ak not in r.stderr


def test_try_with_nothing_listening(tmp_path: Path) -> None:
    init = run_keybroker(
        "init",
        str(tmp_path / "kb"),
        "--non-interactive",
        "--account",
        "x:aws",
        stdin=TRY_REAL,
    )
    assert init.returncode == 0
    config = tmp_path / "kb" / "config.yml"
    config.write_text(config.read_text().replace("127.0.0.1:3888", f"127.0.0.1:{free_port()}"))
    r = run_keybroker("try", "--config", str(config))
    assert r.returncode == 1 and "no answer" in r.stdout and "Traceback" not in r.stderr


def test_init_interactive_never_echoes_the_secret(tmp_path: Path) -> None:
    """Drive ``keybroker init`` on a terminal (a pty): the secret prompt does not echo."""
    secret = "TypedSecret" + os.urandom(8).hex()
    logscan.register(secret)
    pid, fd = pty.fork()
    if pid == 0:  # the child: keybroker on the pty
        os.execv(sys.executable, [*KEYBROKER, "init", str(tmp_path / "kb")])
    answers = iter(["acct\n", "aws\n", "\n", "AKIAREALTYPED0000001\n", secret + "\n"])
    prompts = ("Account name", "Vendor", "Account name", "real AccessKey", "real SecretKey")
    seen = b""
    deadline = time.monotonic() + 60
    for prompt in prompts:
        while prompt.encode() not in seen.split(b"\n")[-1] and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                seen += os.read(fd, 4096)
        os.write(fd, next(answers).encode())
        seen += b"\n"
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert secret.encode() not in seen
    assert b"Give the platform these proxy credentials" in seen
    assert secret not in (tmp_path / "kb" / "config.yml").read_text()
