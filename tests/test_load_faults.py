"""Load with faults: thousands of requests while the upstream is killed and restarted and the
config is reloaded.  Every request gets exactly one well-formed answer (the upstream's, or a
502/503 in key-proxy's shape with a request id), no worker dies, memory returns to baseline."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import logscan
from tests.procs import children
from tests.servers import free_port, port_open, wait_until

pytestmark = pytest.mark.slow  # a load test with faults: outside scripts/test --fast

AK, SK, REAL_SK = "AKIDPROXYLOAD0000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
TOTAL, CONCURRENCY = 3000, 32
REPO = Path(__file__).resolve().parents[1]


def _config(port: int, upstream_port: int, log_dir: Path, extra: str = "") -> str:
    return f"""Http:
  Address: "127.0.0.1:{port}"
  Workers: 2
  UpstreamConnectTimeout: 2
  UpstreamReadTimeout: 5
Log:
  Output: {log_dir}
  Level: warn
Endpoints:
  - CloudAccountName: load
    Vendor: aws
    Upstream: "http://127.0.0.1:{upstream_port}"
    Credentials:
      Proxy: {{AccessKey: "{AK}", SecretKey: "{SK}"}}
      Real: {{AccessKey: "AKIAREALLOAD00000001", SecretKey: "{REAL_SK}"}}{extra}
"""


def _signed(i: int) -> dict[str, str]:
    url = f"https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&n={i}"
    req = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(AK, SK), "sts", "us-east-1").add_auth(req)
    headers = {k: v for k, v in req.headers.items()}
    headers.update(
        {
            "X-Mcdn-Origin-Uri": url,
            "X-Mcdn-Cloud-Account-Name": "load",
            "X-Mcdn-Kept-Headers": "authorization,x-amz-date",
            "X-Mcdn-Request-Id": f"load-{i}",
        }
    )
    return headers


def _rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def _load(url: str, answers: dict[int, tuple[int, str]], faults) -> None:  # type: ignore[no-untyped-def]
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(i: int) -> None:
            async with sem, session.get(url, headers=_signed(i)) as r:
                answers[i] = (r.status, await r.text())

        tasks = [asyncio.create_task(one(i)) for i in range(TOTAL)]
        fault_task = asyncio.create_task(faults())
        await asyncio.gather(*tasks)
        await fault_task


def test_load_with_upstream_restarts_and_reloads(tmp_path: Path) -> None:
    port, up_port = free_port(), free_port()
    log_dir = logscan.log_dir(tmp_path / "log")
    cfg = tmp_path / "config.yml"
    cfg.write_text(_config(port, up_port, log_dir))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start_upstream() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "tests.proxy.upstream_server", str(up_port)], env=env
        )
        wait_until(port_open(up_port), what="upstream")
        return p

    upstream = start_upstream()
    proc = subprocess.Popen([sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)])
    try:
        wait_until(port_open(port), what="keybroker")
        wait_until(lambda: len(children(proc.pid)) == 2, what="workers")
        workers = children(proc.pid)
        url = f"http://127.0.0.1:{port}/"
        # warm up, then take the memory baseline
        warm: dict[int, tuple[int, str]] = {}
        asyncio.run(_load(url, warm, lambda: asyncio.sleep(0)))
        baseline = _rss_kb(workers)

        async def faults() -> None:
            nonlocal upstream
            for round_ in range(3):
                await asyncio.sleep(0.4)
                upstream.send_signal(signal.SIGKILL)
                upstream.wait()
                await asyncio.sleep(0.3)
                upstream = await asyncio.to_thread(start_upstream)
                cfg.write_text(_config(port, up_port, log_dir, f"\n  # reload {round_}"))
                proc.send_signal(signal.SIGHUP)

        answers: dict[int, tuple[int, str]] = {}
        asyncio.run(_load(url, answers, faults))
        assert sorted(answers) == list(range(TOTAL))  # exactly one answer each
        counts: dict[int, int] = {}
        for i, (status, text) in answers.items():
            counts[status] = counts.get(status, 0) + 1
            if status == 200:
                assert text == '{"ok":true}'
            else:
                assert status in (502, 503), (status, text[:200])
                meta = json.loads(text)["ResponseMetadata"]
                assert meta["RequestId"] == f"load-{i}"
                assert meta["Error"]["Code"] in ("Proxy.NetworkErr", "Proxy.TooManyRequests")
        assert counts.get(200, 0) > 0 and counts.get(502, 0) > 0, counts  # faults really hit
        after_faults: dict[int, tuple[int, str]] = {}
        asyncio.run(_load(url, after_faults, lambda: asyncio.sleep(0)))
        assert {s for s, _ in after_faults.values()} == {200}  # fully recovered
        assert children(proc.pid) == workers  # no worker died
        time.sleep(1.0)
        after = _rss_kb(workers)
        assert after - baseline < 40_000, (baseline, after)  # KB: memory back near baseline
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        upstream.kill()
        upstream.wait()
