"""``keybroker seal show``: every credential secret of a config — sealed and opening, sealed
but not opening, a reference, or in clear — and never a value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import logscan
from tests.procs import run_keybroker

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast


def test_show_lists_each_secret_and_whether_it_opens(tmp_path: Path) -> None:
    real_sk = "Real" + os.urandom(12).hex()
    clear_sk = "Clear" + os.urandom(12).hex()
    logscan.register(real_sk, clear_sk)
    made = run_keybroker(
        "init", str(tmp_path / "kb"), "--non-interactive", "--account", "a:aws",
        stdin=f"AKIAREALSHOW00000001 {real_sk}\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = tmp_path / "kb" / "config.yml"
    good = run_keybroker("seal", "show", "--config", str(config))
    assert good.returncode == 0, good.stderr
    assert "Credentials.Proxy.SecretKey  sealed, opens" in good.stdout
    assert "Credentials.Real.SecretKey   sealed, opens" in good.stdout

    text = config.read_text()
    proxy_line = next(line for line in text.splitlines() if 'SecretKey: "${sealed:' in line)
    token = proxy_line.split("${sealed:")[1].split("}")[0]
    moved = text.replace(token, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    moved += (
        "  - CloudAccountName: b\n    Vendor: aws\n    Credentials:\n"
        f'      Proxy: {{AccessKey: "AKIDPROXYSHOW0000002", SecretKey: "{clear_sk}"}}\n'
        '      Real: {AccessKey: "AKIAREALSHOW00000002", SecretKey: "${env:SHOW_SECRET}"}\n'
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(moved)
    r = run_keybroker("seal", "show", "--config", str(bad))
    assert r.returncode == 1
    assert "Credentials.Proxy.SecretKey  sealed, DOES NOT OPEN" in r.stdout
    assert "Endpoints[1] (b)" in r.stdout and "in clear" in r.stdout and "reference" in r.stdout
    assert "--rewrite" in r.stdout
    for secret in (real_sk, clear_sk):
        assert secret not in r.stdout + r.stderr + good.stdout + good.stderr
