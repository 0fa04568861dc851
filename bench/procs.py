"""Processes the benchmark starts and watches: free loopback ports, start/stop by PID (each in
a session of its own), CPU time and memory read from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "Exited",
    "RssSampler",
    "check_alive",
    "children",
    "cpu_seconds",
    "free_port",
    "machine_busy_seconds",
    "peak_rss_kib",
    "port_open",
    "ready_when_open",
    "reset_peak_rss",
    "rss_kib",
    "serve_on_free_port",
    "started",
    "stop",
    "wait_until",
]

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until true; ``RuntimeError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")


@contextlib.contextmanager
def started(
    cmd: list[str], *, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in a new session (output to ``log``) until the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop(proc)


class Exited(RuntimeError):
    """A server exited while starting (a port taken between ``free_port`` and its bind)."""


def check_alive(proc: subprocess.Popen[bytes], log: Path) -> bool:
    """True while ``proc`` runs; ``Exited`` with the end of its output once it has exited."""
    if proc.poll() is None:
        return True
    tail = log.read_bytes()[-1500:].decode(errors="replace") if log.exists() else ""
    raise Exited(f"{log.stem} exited with {proc.returncode}: {tail}")


@contextlib.contextmanager
def serve_on_free_port(
    make_cmd: Callable[[int], list[str]],
    log_stem: Path,
    ready: Callable[[subprocess.Popen[bytes], int, Path], None],
    attempts: int = 3,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``make_cmd(port)`` on a free port and wait for ``ready(proc, port, log)``; when
    it exits while starting (``Exited``), try again on another port."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        log = log_stem.with_name(f"{log_stem.name}-{attempt}.out")
        with started(make_cmd(port), log=log) as proc:
            try:
                ready(proc, port, log)
            except Exited:
                if attempt == attempts:
                    raise
                continue
            yield proc, port
            return


def ready_when_open(what: str) -> Callable[[subprocess.Popen[bytes], int, Path], None]:
    """A ``ready`` for :func:`serve_on_free_port`: the process runs and its port accepts."""

    def ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        wait_until(lambda: check_alive(proc, log) and port_open(port), what)

    return ready


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group led by ``proc`` (it drains), SIGKILL it after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the workers of a supervisor)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(x) for x in path.read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (fields 14 and 15 of ``stat``)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            # the command name (field 2) may hold spaces: split after its closing parenthesis
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS:")


def peak_rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmHWM:")


def reset_peak_rss(pids: list[int]) -> bool:
    """Reset ``VmHWM`` (writing 5 to ``clear_refs``); False where the kernel refuses."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


class RssSampler:
    """Samples the RSS of ``pids`` every ``interval`` s in a thread; ``peak`` per pid and the
    peak of their sum.  ``VmHWM`` is read at the end too, so a spike between samples counts
    (when ``reset_peak_rss`` worked before the run)."""

    def __init__(self, pids: list[int], interval: float = 0.01) -> None:
        self.pids = pids
        self.interval = interval
        self.baseline = {pid: rss_kib(pid) for pid in pids}
        self.peak = dict(self.baseline)
        self.peak_sum = sum(self.baseline.values())
        self.hwm_valid = reset_peak_rss(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.hwm_valid:
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], peak_rss_kib(pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = {pid: rss_kib(pid) for pid in self.pids}
            for pid, kib in now.items():
                self.peak[pid] = max(self.peak[pid], kib)
            self.peak_sum = max(self.peak_sum, sum(now.values()))

    def summary(self) -> dict[str, float]:
        """MB figures: the largest worker's peak, its growth over its baseline, and the peak of
        all workers together."""
        growth = max((self.peak[p] - self.baseline[p] for p in self.pids), default=0)
        return {
            "baseline_mb": round(max(self.baseline.values(), default=0) / 1024, 1),
            "peak_worker_mb": round(max(self.peak.values(), default=0) / 1024, 1),
            "growth_worker_mb": round(growth / 1024, 1),
            "peak_all_workers_mb": round(self.peak_sum / 1024, 1),
            "growth_all_workers_mb": round((self.peak_sum - sum(self.baseline.values())) / 1024, 1),
        }


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK
