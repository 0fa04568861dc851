"""Benchmark: what the write-ahead audit costs, in requests per second.

    python -m bench.audit_cost [--duration 3] [--connections 16] [--dir DIR]

``keybroker serve`` with one worker (the load generator needs the other core) proxies signed
STS GETs to the local upstream, once per mode: the audit off, ``Audit.Sync: none`` (records
written, never fsync'ed: the CPU cost alone), ``5ms`` (the records of a 5 ms window share one
fsync) and ``always`` (one fsync per record, in a thread).  Every forwarded request writes two
records (ahead and outcome) with a signing key set, so checkpoints are part of the cost.  The
audit directory is made under ``--dir`` (default: ``bench/results``), on the disk an operator
would use: on a tmpfs fsync is free and the figures mean nothing.  Prints one line per mode,
or with ``--json`` the figures as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.loadgen import closed_loop, run_async
from bench.procs import ready_when_open, serve_on_free_port
from bench.proxy_server import _wait_idle, config_text
from bench.signing import Accounts, aws_get, with_host
from keybroker.audit.keys import PRIVATE_KEY_NAME, generate_key_pair

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("off", "none", "5ms", "always")


@contextlib.contextmanager
def _upstream(workdir: Path) -> Iterator[int]:
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.upstream", str(port)]

    with serve_on_free_port(command, workdir / "upstream", ready_when_open("upstream")) as (
        _,
        port,
    ):
        yield port


def _config(port: int, up_port: int, workdir: Path, accounts: Accounts, mode: str) -> str:
    text = config_text(port, up_port, workdir / f"log-{mode}", accounts, replay=False)
    text = text.replace(
        f'  Address: "127.0.0.1:{port}"\n', f'  Address: "127.0.0.1:{port}"\n  Workers: 1\n'
    )
    if mode != "off":
        key = workdir / "keys" / PRIVATE_KEY_NAME
        text = text.replace(
            "Endpoints:\n",
            f"Audit:\n  Enabled: true\n  Output: {workdir / f'audit-{mode}'}\n"
            f"  Sync: {mode}\n  SigningKey: {key}\n  CheckpointInterval: 1\nEndpoints:\n",
        )
    return text


def measure(
    mode: str, up_port: int, workdir: Path, accounts: Accounts, requests: list[bytes],
    connections: int, duration: float,
) -> dict[str, Any]:  # fmt: skip
    def command(port: int) -> list[str]:
        cfg = workdir / f"config-{mode}-{port}.yml"
        cfg.write_text(_config(port, up_port, workdir, accounts, mode))
        cfg.chmod(0o600)
        return [sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)]

    ready = ready_when_open("keybroker")
    with serve_on_free_port(command, workdir / f"keybroker-{mode}", ready) as (proc, port):
        _wait_idle([proc.pid])
        targeted = [with_host(r, port) for r in requests]
        run_async(lambda: closed_loop(port, targeted, connections, 0.5))  # warm up
        result = run_async(lambda: closed_loop(port, targeted, connections, duration))
    out = result.as_dict()
    out["mode"] = mode
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per mode")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=RESULTS, help="where the audit is written")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="audit-cost-", dir=args.dir))
    try:
        accounts = Accounts()
        generate_key_pair(workdir / "keys")
        requests = aws_get(accounts, 64)
        rows = []
        with _upstream(workdir) as up_port:
            for mode in MODES:
                rows.append(
                    measure(mode, up_port, workdir, accounts, requests, args.connections,
                            args.duration)
                )  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    base = rows[0]["rps"] or 1.0
    for row in rows:
        lat = row.get("latency_ms", {})
        print(
            f"audit {row['mode']:>6}: {row['rps']:8.0f} requests/s "
            f"({row['rps'] / base:4.0%} of off)  p50 {lat.get('p50', 0):6.2f} ms  "
            f"p99 {lat.get('p99', 0):6.2f} ms  non-2xx {row['non_2xx']}  errors {row['errors']}"
        )


if __name__ == "__main__":
    main()
