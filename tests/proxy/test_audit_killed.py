"""A worker SIGKILLed while an answer streams: the request's write-ahead record is on disk.

``keybroker serve`` runs as it would in production (one process, ``Http.Workers: 1``); the upstream
answers a signed S3 DELETE with a head and a first chunk, then holds the rest; the client has
the first chunk when the worker is killed.  The audit log then holds the request's record
(written before the forward) and no outcome, and the chain verifies."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from aiohttp import web

from keybroker.audit.verify import verify
from tests import logscan
from tests.proxy.platform import sign_aws
from tests.servers import app_in_thread, free_port, port_open, wait_until

AK, SK, REAL_SK = "AKIDPROXYKILLED00001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
URI = "https://s3.us-east-1.amazonaws.com/bucket/evidence"


@pytest.mark.slow
def test_sigkill_mid_answer_leaves_the_write_ahead_record(tmp_path: Path) -> None:
    release = threading.Event()
    upstream_saw: list[str] = []

    async def slow(req: web.Request) -> web.StreamResponse:
        upstream_saw.append(req.method)
        resp = web.StreamResponse(headers={"Content-Length": str(2 * 65536)})
        await resp.prepare(req)
        await resp.write(b"x" * 65536)
        for _ in range(300):  # hold the second half (at most 30 s)
            if release.is_set():
                break
            await asyncio.sleep(0.1)
        await resp.write(b"x" * 65536)
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    up_port, port = free_port(), free_port()
    audit_dir = logscan.log_dir(tmp_path / "audit")
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        f'Http:\n  Address: "127.0.0.1:{port}"\n  Workers: 1\n'
        f"Audit: {{Enabled: true, Output: {audit_dir}, Sync: always}}\n"
        f"Endpoints:\n  - CloudAccountName: acct\n    Vendor: aws\n"
        f'    Upstream: "http://127.0.0.1:{up_port}"\n    Credentials:\n'
        f'      Proxy: {{AccessKey: "{AK}", SecretKey: "{SK}"}}\n'
        f'      Real: {{AccessKey: "AKIAREALKILLED000001", SecretKey: "{REAL_SK}"}}\n'
    )
    with app_in_thread(app, up_port, what="upstream"):
        proc = subprocess.Popen([sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)])
        try:
            wait_until(port_open(port), what="keybroker serve")
            worker = proc.pid
            signed = sign_aws("DELETE", URI, ak=AK, sk=SK, service="s3")
            headers = {k: v for k, v in signed.items() if k.lower() != "host"}
            headers.update(
                {
                    "X-Mcdn-Origin-Uri": URI,
                    "X-Mcdn-Cloud-Account-Name": "acct",
                    "X-Mcdn-Kept-Headers": ",".join(k.lower() for k in headers),
                    "X-Mcdn-Request-Id": "killed-1",
                }
            )
            with requests.request(
                "DELETE", f"http://127.0.0.1:{port}/", headers=headers, stream=True, timeout=30
            ) as r:
                assert r.status_code == 200
                first = next(r.iter_content(65536))
                assert first  # the answer is streaming
                os.kill(worker, signal.SIGKILL)
                time.sleep(0.2)
        finally:
            release.set()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert upstream_saw == ["DELETE"]
    lines = [json.loads(x) for x in (audit_dir / "audit.log").read_text().splitlines()]
    mine = [x for x in lines if x.get("client_request_id") == "killed-1"]
    assert len(mine) == 1, lines
    record = mine[0]
    assert record["event"] == "request" and record["decision"] == "allow"
    assert record["method"] == "DELETE" and record["path"] == "/bucket/evidence"
    assert record["account"] == "acct" and record["service"] == "s3"
    assert not [x for x in lines if x.get("request_id") == record["request_id"] and x is not record]
    assert verify(audit_dir).ok
