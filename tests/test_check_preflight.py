"""``keybroker check`` says what ``serve`` would fail on (exit 1) and what is less safe than it
could be (warnings; ``--strict`` makes them fail): before, check passed configs that serve
could not start, an expired proxy credential, and plain HTTP on every interface."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests import logscan
from tests.procs import KEYBROKER

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

PROXY_SK = "p" + secrets.token_urlsafe(30)
REAL_SK = "r" + secrets.token_urlsafe(30)
logscan.register(PROXY_SK, REAL_SK)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.yml"


def _config(tmp: Path, head: str = "", proxy_extra: str = "") -> Path:
    path = tmp / "config.yml"
    path.write_text(
        head + "Endpoints:\n"
        "  - CloudAccountName: a\n    Vendor: aws\n    Credentials:\n"
        f'      Proxy: {{AccessKey: "AKIDPROXYCHECK000001", SecretKey: "{PROXY_SK}"'
        f"{proxy_extra}}}\n"
        f'      Real: {{AccessKey: "AKIAREALCHECK0000001", SecretKey: "{REAL_SK}"}}\n'
    )
    return path


def _check(path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [*KEYBROKER, "check", *flags, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in r.stderr
    assert PROXY_SK not in r.stdout + r.stderr and REAL_SK not in r.stdout + r.stderr
    return r


def test_warnings_pass_unless_strict() -> None:
    r = _check(EXAMPLE)
    assert r.returncode == 0
    assert "warning: Audit.Enabled is false" in r.stderr
    strict = _check(EXAMPLE, "--strict")
    assert strict.returncode == 1 and "error: Audit.Enabled is false" in strict.stderr


def test_a_key_service_that_cannot_start_fails_check(tmp_path: Path) -> None:
    head = (
        "KeyService:\n  Enabled: true\n"
        f'  KMS: "kms://local?keyFile={tmp_path}/missing/kek.bin"\n'
        '  Storage: "storage://memory"\n'
    )
    r = _check(_config(tmp_path, head))
    assert r.returncode == 1
    assert "serve would not start" in r.stderr and "KeyService.KMS" in r.stderr


def test_tls_files_that_do_not_load_fail_check(tmp_path: Path) -> None:
    for name in ("bad.crt", "bad.key"):  # readable files, but no certificate or key
        (tmp_path / name).write_text("not PEM at all\n")
    head = (
        "Http:\n  Tls:\n    Enabled: true\n"
        f'    CertFile: "{tmp_path}/bad.crt"\n    KeyFile: "{tmp_path}/bad.key"\n'
    )
    r = _check(_config(tmp_path, head))
    assert r.returncode == 1 and "Http.Tls: cannot load CertFile/KeyFile" in r.stderr


def test_an_unwritable_log_directory_fails_check(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = _check(_config(tmp_path, f'Log:\n  Output: "{blocker}/log"\n'))
    assert r.returncode == 1 and f"Log.Output: {blocker} is not a directory" in r.stderr


@pytest.mark.parametrize(
    ("head", "extra", "expected"),
    [
        ('Http:\n  Address: ":3888"\n', "", "listens beyond this machine without TLS"),
        ('Http:\n  Address: "0.0.0.0:3888"\n', "", "listens beyond this machine without TLS"),
        ("Forbidden:\n  ForbiddenProxyCredentialErr: false\n", "", "ForbiddenProxyCredentialErr"),
        ("Security:\n  MetricsClientCIDRs: []\n", "", "/metrics"),
        ("", ', ExpiresAt: "2020-01-01T00:00:00Z"', "expired at 2020-01-01T00:00:00"),
    ],
)
def test_less_safe_settings_are_warned(
    tmp_path: Path, head: str, extra: str, expected: str
) -> None:
    path = _config(tmp_path, head, extra)
    r = _check(path)
    assert r.returncode == 0 and expected in r.stderr
    assert _check(path, "--strict").returncode == 1
