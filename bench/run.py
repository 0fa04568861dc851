"""The whole benchmark in one process lifetime: a local upstream, ``keybroker serve`` (once with
the replay cache off for the throughput sweep, once with it on, as deployed), load, large
bodies, memory, KMS.  Every server is on 127.0.0.1 and stopped by PID at the end."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import signing
from bench.kms_rate import kms_rates
from bench.phases import floor, large, latency, posts, profile, quiet_log, replay_on, sweep
from bench.procs import ready_when_open, serve_on_free_port
from bench.proxy_server import keybroker_serve
from bench.signing import Accounts
from bench.state import METHOD, Bench, Settings
from bench.wrk import have_wrk

__all__ = ["Bench", "Settings", "run"]


@contextlib.contextmanager
def _upstream(workdir: Path) -> Iterator[tuple[int, int]]:
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.upstream", str(port)]

    ready = ready_when_open("the upstream")
    with serve_on_free_port(command, workdir / "upstream", ready) as (proc, port):
        yield port, proc.pid


def _commit() -> str | None:
    """The checkout measured (with ``+dirty`` when it has changes), if it is a git one."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=repo, capture_output=True, text=True
        )
    except OSError:
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def meta(settings: Settings) -> dict[str, Any]:
    from keybroker import __version__

    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "keybroker": __version__,
        "commit": _commit(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "settings": {k: v for k, v in settings.__dict__.items() if k != "artifacts"},
        "method": METHOD,
    }


def run(settings: Settings) -> dict[str, Any]:
    """Run every phase; the results as a JSON-ready dict (targets added by the caller)."""
    if settings.generator == "wrk" and not have_wrk():
        print("wrk is not installed (apt-get install wrk): using the Python generator", flush=True)
        settings.generator = "python"
    results: dict[str, Any] = {"meta": meta(settings)}
    with tempfile.TemporaryDirectory(prefix="keybroker-bench-") as tmp:
        workdir = Path(tmp)
        accounts = Accounts()
        with _upstream(workdir) as (up_port, up_pid):
            bench = Bench(settings, workdir, accounts, up_port, up_pid)
            pools = {
                "aws": signing.aws_get(accounts, settings.pool),
                "volcengine": signing.volc_post(accounts, settings.pool),
            }
            print(
                "throughput, replay cache off (a pool of pre-signed requests cycled):", flush=True
            )
            level = settings.log_level
            with keybroker_serve(workdir, up_port, accounts, replay=False, level=level) as kb:
                results["throughput"] = sweep(bench, kb, pools)
                if settings.profile:
                    results["profile"] = profile(bench, kb, pools["aws"])
            if level.lower() in ("debug", "info"):
                print("the same with Log.Level warn (no access log line):", flush=True)
                results["log_warn"] = quiet_log(bench, results["throughput"])
            print(
                "the floors: bare pass-through proxies on aiohttp and on keybroker's HTTP layer,"
                " same load:",
                flush=True,
            )
            results["floor"] = floor(bench, results["throughput"])
            print(
                "replay cache on (memory, shared by the workers), every request unique:", flush=True
            )
            with keybroker_serve(workdir, up_port, accounts, replay=True, level=level) as kb:
                results["replay_on"] = replay_on(bench, kb, results["throughput"])
                results["latency"] = latency(bench, kb, results["throughput"], results["replay_on"])
                results["large"] = large(bench, kb)
                results["posts"] = posts(bench, kb)
    print("KMS get_dek rates:", flush=True)
    results["kms"] = kms_rates(settings.kms_seconds, run_script=settings.kms_script)
    for name, value in results["kms"].items():
        if isinstance(value, int | float):
            print(f"  {name:32} {value:12,.0f}", flush=True)
    results["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return results
