"""Where a worker's time goes: py-spy samples one worker during a load run; the collapsed
stacks are summed into the top functions by own ("self") and by inclusive time."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult

__all__ = ["profile_worker", "top_functions"]


def top_functions(folded: str, n: int = 25) -> dict[str, Any]:
    """From py-spy's raw (collapsed) output: the ``n`` functions with most self samples and
    with most inclusive samples, as shares of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * k / total, 1)] for name, k in counter.most_common(n)]

    return {"samples": total, "self_percent": share(own), "inclusive_percent": share(inclusive)}


def profile_worker(
    workdir: Path, pid: int, run: Callable[[], LoadResult], out: Path | None = None
) -> dict[str, Any] | None:
    """Sample ``pid`` with py-spy while ``run()`` loads it; None when py-spy is missing."""
    if shutil.which("py-spy") is None:
        print("  (py-spy is not installed: pip install py-spy)", flush=True)
        return None
    folded = workdir / "profile.folded"
    cmd = [
        "py-spy",
        "record",
        "--format",
        "raw",
        "--rate",
        "250",
        "--nonblocking",
        "--pid",
        str(pid),
        "--output",
        str(folded),
    ]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        result = run()
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        _, err = spy.communicate(timeout=60)
    if not folded.exists():
        return {"error": err.decode(errors="replace")[-300:]}
    text = folded.read_text()
    if out is not None:
        shutil.copyfile(folded, out)
    summary = top_functions(text)
    summary["run"] = result.as_dict()
    return summary
