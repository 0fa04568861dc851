"""Every configured secret of the test run, and every log line written during it.

Tests that configure secrets call :func:`register`; the root logger writes every record
(all levels, unscrubbed) to one file per run; tests whose keybroker writes its own log files
name their directory with :func:`log_dir`.

This module is also a pytest plugin (``tests/conftest.py`` loads it; ``-p tests.logscan``
anywhere else): once the session is over — every test run, every session fixture torn down —
it scans those logs for every registered secret and fails the run if one is there. The scan
does not depend on which tests ran nor in what order: it sees what the run registered and wrote.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SECRETS: set[str] = set()
LOG_DIRS: set[Path] = set()
RUN_DIR = Path(tempfile.mkdtemp(prefix="keybroker-test-logs-"))
ALL_LOG = RUN_DIR / "all-records.log"

# the test that registered each secret, for the report (never the secret itself)
_REGISTERED_BY: dict[str, str] = {}


def register(*secrets: str) -> None:
    for s in secrets:
        if s and s not in SECRETS:
            SECRETS.add(s)
            _REGISTERED_BY[s] = _current_test()


def log_dir(path: Path) -> Path:
    LOG_DIRS.add(path)
    return path


def _current_test() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" (", 1)[0] if current else "module import"


class _EverythingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        return f"{text} {fields!r}" if fields else text


_NOISY = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "asyncio",
    "azure",
    "google",
    "aliyunsdkcore",
    "volcenginesdkcore",
    "baidubce",
    "tencentcloud",
    "huaweicloudsdkcore",
    "jdcloud_sdk",
    "qiniu",
    "ucloud",
    "akamai",
)


def install_root_handler() -> None:
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(ALL_LOG) for h in root.handlers):
        return
    handler = logging.FileHandler(ALL_LOG, encoding="utf-8")
    handler.setFormatter(_EverythingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.INFO)


# -- the scan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    secret_number: int  # its place in the sorted secrets: the report never shows the value
    registered_by: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: secret #{self.secret_number} "
            f"(registered by {self.registered_by})"
        )


def log_files() -> list[Path]:
    """The run's record file and every file under the log directories the tests named."""
    files = [ALL_LOG] if ALL_LOG.exists() else []
    for d in sorted(LOG_DIRS):
        if d.exists():
            files.extend(sorted(p for p in d.rglob("*") if p.is_file()))
    return files


def leaks(secrets: Iterable[str] | None = None, files: Iterable[Path] | None = None) -> list[Leak]:
    """Each (file, secret) pair where the secret appears, at its first line in that file.

    By default the registered secrets in :func:`log_files`; a test passes its own.
    """
    ordered = sorted(SECRETS if secrets is None else set(secrets))
    found = []
    for path in log_files() if files is None else files:
        text = path.read_bytes().decode("utf-8", "replace")
        for number, secret in enumerate(ordered):
            at = text.find(secret)
            if at >= 0:
                line = text.count("\n", 0, at) + 1
                found.append(Leak(path, line, number, _REGISTERED_BY.get(secret, "a test")))
    return found


# -- the pytest plugin ------------------------------------------------------------------------

_FOUND_KEY = pytest.StashKey[list[Leak]]()


def pytest_configure(config: pytest.Config) -> None:
    install_root_handler()


@pytest.hookimpl(trylast=True)  # after the session fixtures' teardown, which logs too
def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not session.testscollected:
        return
    for handler in logging.getLogger().handlers:
        handler.flush()
    found = leaks()
    session.config.stash[_FOUND_KEY] = found
    if found and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = terminalreporter.config.stash.get(_FOUND_KEY, None)
    if found is None:
        return
    if not found:
        terminalreporter.write_line(
            f"log scan: {len(SECRETS)} registered secrets, {len(log_files())} log files: "
            "no secret in any log"
        )
        return
    terminalreporter.section("log scan: secrets found in logs", sep="=", red=True, bold=True)
    for leak in found:
        terminalreporter.write_line(str(leak), red=True)
    terminalreporter.write_line(f"(the records of this run are in {RUN_DIR}; the run fails)")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's records are kept only when they show a leak (the report names the folder)."""
    if not config.stash.get(_FOUND_KEY, None):
        shutil.rmtree(RUN_DIR, ignore_errors=True)
