"""The end-of-run secret scan (tests/logscan.py) finds what it must, wherever it is written;
the scan itself runs once the session is over, whatever tests ran and in whatever order."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

from tests import logscan

ROOT = Path(__file__).resolve().parents[1]


def test_the_scan_finds_a_planted_secret_with_its_line(tmp_path: Path) -> None:
    planted = "planted-" + secrets.token_urlsafe(16)
    log = tmp_path / "log" / "keybroker.log"
    log.parent.mkdir()
    log.write_text("first line\nsecond line carries it: " + planted + "\n")
    (tmp_path / "log" / "clean.log").write_text("nothing here\n")
    found = logscan.leaks([planted, "never-written"], sorted(log.parent.iterdir()))
    assert [(leak.path.name, leak.line) for leak in found] == [("keybroker.log", 2)]
    assert planted not in str(found[0])  # the report numbers the secret, never shows it


def test_every_record_of_the_run_reaches_the_scanned_file() -> None:
    marker = "logscan-marker-" + secrets.token_hex(8)  # not a secret: nothing registers it
    logging.getLogger("keybroker.anything").debug("a debug record %s", marker)
    assert logscan.ALL_LOG in logscan.log_files()
    assert marker in logscan.ALL_LOG.read_text(encoding="utf-8", errors="replace")


def _run_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """A pytest session of one test file, with the scan loaded as in this suite."""
    (tmp_path / "test_one.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    env["TMPDIR"] = str(tmp_path)  # the folder a leaking run keeps stays in this test's tmp
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.logscan"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_secret_logged_anywhere_in_the_session_fails_the_run(tmp_path: Path) -> None:
    planted = "planted-" + secrets.token_urlsafe(16)
    leaky = (
        "import logging\nfrom tests import logscan\n\n"
        "def test_registers():\n"
        f"    logscan.register({planted!r})\n\n"
        "def test_logs_it_later():\n"
        f"    logging.getLogger('keybroker.proxy').warning('oops %s', {planted!r})\n"
    )
    run = _run_session(tmp_path, leaky)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 passed" in run.stdout  # every test passed: the scan alone fails the run
    assert "log scan: secrets found in logs" in run.stdout
    assert "secret #0 (registered by test_one.py::test_registers)" in run.stdout
    assert planted not in run.stdout + run.stderr
