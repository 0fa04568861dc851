"""keybroker's command line and its processes, for the tests that run it as an operator does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

KEYBROKER = [sys.executable, "-m", "keybroker"]


def run_keybroker(
    *args: str, stdin: str = "", cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``keybroker ARGS`` to completion, ``stdin`` as its input; text output captured."""
    return subprocess.run(
        [*KEYBROKER, *args], input=stdin, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (a supervisor's workers)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]
