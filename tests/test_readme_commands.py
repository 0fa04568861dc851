"""The README's first hour, literally: ``scripts/run init``, ``scripts/run CONFIG`` (serve) and
``scripts/run try`` from the checkout — each a real run of the script a newcomer types, which
sets up (a no-op once set up) and runs keybroker — proving a request through the proxy to a
verifying upstream (moto enforcing SigV4: the request must arrive signed with the real key)."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests import logscan
from tests.servers import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[1]
RUN = str(REPO / "scripts" / "run")


def _set_up() -> bool:
    """scripts/setup completed in this checkout (as .ci/run does first); in a checkout that
    was never set up, scripts/run would install everything, minutes of work."""
    stamp = REPO / ".venv" / ".keybroker-setup"
    return stamp.exists()


pytestmark = pytest.mark.skipif(not _set_up(), reason="scripts/setup has not run in this checkout")


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUN, *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_the_readme_first_hour(tmp_path: Path, moto_auth: tuple[str, str, str]) -> None:
    readme = (REPO / "README.md").read_text()
    for command in ("scripts/run init ./kb", "scripts/run ./kb/config.yml &", "scripts/run try"):
        assert command in readme  # the commands this test runs are the ones the README shows

    moto_url, real_ak, real_sk = moto_auth
    kb, port = tmp_path / "kb", free_port()
    made = _run(
        "init", str(kb), "--non-interactive", "--account", "aws-demo:aws", "--port", str(port),
        stdin=f"{real_ak} {real_sk}\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    proxy_sk = re.search(r"SecretKey=(\S+)", made.stdout)
    assert proxy_sk
    logscan.register(proxy_sk.group(1))
    logscan.log_dir(kb / "log")
    config = kb / "config.yml"
    # what an operator does for an S3-compatible store or, here, a local moto
    text = config.read_text().replace(
        '    Vendor: "aws"\n', f'    Vendor: "aws"\n    Upstream: "{moto_url}"\n'
    )
    config.write_text(text)

    serve = subprocess.Popen([RUN, str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(port_open(port), timeout=120, what="scripts/run serve")
        tried = _run("try", "--config", str(config))
        assert tried.returncode == 0, tried.stdout + tried.stderr
        assert "<- 200 OK" in tried.stdout and "GetCallerIdentityResponse" in tried.stdout
        assert real_sk not in tried.stdout + tried.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b"keybroker configuration" in out  # scripts/run checks the config before serving
