"""Runs last: no configured secret appears in any log line written during the test run."""

from __future__ import annotations

from pathlib import Path

from tests import logscan


def _log_files() -> list[Path]:
    files = [logscan.ALL_LOG]
    for d in logscan.LOG_DIRS:
        if d.exists():
            files.extend(p for p in d.rglob("*") if p.is_file())
    return files


def test_secrets_were_registered_and_logs_written() -> None:
    # The scan below is only meaningful if the run configured secrets and logged requests.
    assert logscan.SECRETS, "no secrets were registered by the test run"
    assert logscan.ALL_LOG.stat().st_size > 0


def test_no_secret_in_any_log() -> None:
    leaks = []
    for path in _log_files():
        text = path.read_bytes().decode("utf-8", "replace")
        leaks.extend(
            f"{path.name}: secret #{i}" for i, s in enumerate(sorted(logscan.SECRETS)) if s in text
        )
    assert not leaks, f"secrets found in logs: {leaks}"
