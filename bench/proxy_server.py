"""``keybroker serve`` as operators run it: a config file, a supervisor and its workers
(``Http.Workers`` left at its default, one per core), logging at ``info`` to a file."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.procs import (
    check_alive,
    children,
    cpu_seconds,
    port_open,
    serve_on_free_port,
    wait_until,
)
from bench.signing import Accounts

__all__ = ["ProxyServer", "config_text", "keybroker_serve"]

#: a streamed upload is bounded by the account's MaxBodyBytes too (Content-Length is checked
#: before the first byte is read), so the account used for the 1 GiB upload allows 2 GiB
S3_MAX_BODY = 2 << 30


@dataclass
class ProxyServer:
    """A running ``keybroker serve``: its port, supervisor pid and worker pids."""

    port: int
    pid: int
    workers: list[int]

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.workers]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids)


def _endpoint(
    name: str,
    vendor: str,
    upstream: str,
    proxy: tuple[str, str],
    real: tuple[str, str],
    extra: str = "",
) -> str:
    return f"""  - CloudAccountName: {name}
    Vendor: {vendor}
    Upstream: "{upstream}"{extra}
    Credentials:
      Proxy: {{AccessKey: "{proxy[0]}", SecretKey: "{proxy[1]}"}}
      Real: {{AccessKey: "{real[0]}", SecretKey: "{real[1]}"}}
"""


def config_text(
    port: int,
    upstream_port: int,
    log_dir: Path,
    accounts: Accounts,
    replay: bool,
    level: str = "info",
) -> str:
    """The YAML config: one AWS, one S3 and one Volcengine account, all sent upstream to
    the local server."""
    up = f"http://127.0.0.1:{upstream_port}"
    a = accounts
    return (
        f"""Http:
  Address: "127.0.0.1:{port}"
Log:
  Output: {log_dir}
  Level: {level}
Security:
  ReplayCache: {"memory" if replay else "off"}
  ReplayProtection: all  # the benchmark's calls are reads: every one still asks the cache
Endpoints:
"""
        + _endpoint("aws-bench", "aws", up, a.aws_proxy, a.aws_real)
        + _endpoint(
            "s3-bench", "aws", up, a.s3_proxy, a.s3_real, f"\n    MaxBodyBytes: {S3_MAX_BODY}"
        )
        + _endpoint("volc-bench", "volcengine", up, a.volc_proxy, a.volc_real)
    )


@contextlib.contextmanager
def keybroker_serve(
    workdir: Path, upstream_port: int, accounts: Accounts, *, replay: bool, level: str = "info"
) -> Iterator[ProxyServer]:
    """Start ``keybroker serve``; wait until every worker is up and the port answers."""
    # every server its own files: a log left by an earlier one must not look like readiness
    tag = f"{'replay-on' if replay else 'replay-off'}-{level}-{secrets.token_hex(3)}"
    count = os.cpu_count() or 1

    def command(port: int) -> list[str]:
        cfg = workdir / f"config-{tag}-{port}.yml"
        log_dir = workdir / f"log-{tag}-{port}"
        cfg.write_text(config_text(port, upstream_port, log_dir, accounts, replay, level))
        cfg.chmod(0o600)
        return [sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)]

    def ready(proc: subprocess.Popen[bytes], port: int, out: Path) -> None:
        # the port opens as soon as the supervisor binds it; a worker serves only once its
        # imports are done, which it logs ("listening") at level info
        log_dir = workdir / f"log-{tag}-{port}"
        if level.lower() in ("debug", "info"):

            def listening() -> bool:
                return check_alive(proc, out) and _listening(log_dir) >= count

            wait_until(listening, "keybroker workers", timeout=90)
        wait_until(lambda: check_alive(proc, out) and port_open(port), "keybroker")
        if count > 1:
            wait_until(lambda: len(children(proc.pid)) >= count, "keybroker workers")
        _wait_idle(children(proc.pid) or [proc.pid])

    with serve_on_free_port(command, workdir / f"keybroker-{tag}", ready) as (proc, port):
        workers = children(proc.pid) if count > 1 else []
        yield ProxyServer(port, proc.pid, workers)


def _wait_idle(pids: list[int], timeout: float = 60.0) -> None:
    """Until the processes stop using CPU (a worker importing its modules does not)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_seconds(pids)
        if now - last < 0.02:
            return
        last = now


def _listening(log_dir: Path) -> int:
    try:
        text = (log_dir / "key_proxy.log").read_text()
    except OSError:
        return 0
    return text.count('"msg":"listening"')
