"""Bodies the proxy must hash itself (no payload-hash header) are spooled past 1 MiB: verified
from their hash, streamed to the upstream from the spool, memory bounded."""

from __future__ import annotations

import hashlib
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream
from tests.servers import free_port, port_open, wait_until

URI = "https://logs.us-east-1.amazonaws.com/"
AK, SK, REAL_SK = "AKIDPROXYSPOOL000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
JSON = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.PutLogEvents"}


def _cfg(upstream: str) -> Config:
    return Config(
        endpoints=[aws_endpoint("acct", AK, SK, "AKIAREALSPOOL0000001", REAL_SK, upstream)]
    )


def test_large_body_is_verified_from_its_hash_and_streamed() -> None:
    body = secrets.token_bytes(5 * 1024 * 1024)
    with recording_upstream() as up, proxy_running(_cfg(up.url)) as (url, _):
        signed = sign_aws("POST", URI, ak=AK, sk=SK, service="logs", body=body, headers=JSON)
        assert "X-Amz-Content-Sha256" not in signed  # botocore: the proxy must hash the body
        r = send(url, "POST", URI, signed, account="acct", body=body)
        assert r.status == 200, r.body
        tampered = body[:-1] + bytes([body[-1] ^ 1])
        bad = send(url, "POST", URI, signed, account="acct", body=tampered)
    assert bad.status == 401
    (seen,) = up.seen  # the tampered one never reached the upstream
    assert hashlib.sha256(seen.body).digest() == hashlib.sha256(body).digest()
    assert seen.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAREALSPOOL")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_eight_concurrent_5mb_posts_keep_memory_flat(tmp_path: Path) -> None:
    """The Go key-proxy grows by about 240 MB here and keeps it."""
    port = free_port()
    with recording_upstream() as up:
        cfg = tmp_path / "config.yml"
        cfg.write_text(f"""Http: {{Address: "127.0.0.1:{port}", Workers: 1}}
Log: {{Output: "{logscan.log_dir(tmp_path / "log")}", Level: warn}}
Security: {{ReplayCache: "off"}}
Endpoints:
  - CloudAccountName: acct
    Vendor: aws
    Upstream: "{up.url}"
    Credentials:
      Proxy: {{AccessKey: "{AK}", SecretKey: "{SK}"}}
      Real: {{AccessKey: "AKIAREALSPOOL0000001", SecretKey: "{REAL_SK}"}}
""")
        proc = subprocess.Popen([sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)])
        try:
            wait_until(port_open(port), what="keybroker")
            url = f"http://127.0.0.1:{port}"
            body = secrets.token_bytes(5 * 1024 * 1024)
            signed = sign_aws("POST", URI, ak=AK, sk=SK, service="logs", body=body, headers=JSON)
            assert send(url, "POST", URI, signed, account="acct", body=body).status == 200  # warm
            baseline = _rss_kb(proc.pid)
            statuses: list[int] = []
            for _ in range(2):
                threads = [
                    threading.Thread(
                        target=lambda: statuses.append(
                            send(url, "POST", URI, signed, account="acct", body=body).status
                        )
                    )
                    for _ in range(8)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
            grown = _rss_kb(proc.pid) - baseline
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert statuses == [200] * 16
    # The bound is 50 MB; spooling keeps at most 1 MiB per request in memory, so the
    # growth stays far below even 16 MB (buffering the bodies whole grows it by ~26 MB here).
    assert grown < 16 * 1024, f"RSS grew by {grown} KB"


def test_streamed_bodies_are_bounded_only_by_the_account_limit() -> None:
    """``Http.MaxBodyBytes`` bounds what the proxy buffers; a body streamed through (its hash
    claimed in a header) is bounded only by the account's own ``MaxBodyBytes``."""
    from keybroker.settings import HttpConfig

    body = secrets.token_bytes(3 * 1024 * 1024)
    uri = "https://s3.amazonaws.com/bucket/key"
    claim = {"X-Amz-Content-Sha256": hashlib.sha256(body).hexdigest()}
    with recording_upstream() as up:
        cfg = _cfg(up.url)
        cfg.http = HttpConfig(max_body_bytes=1024 * 1024)
        with proxy_running(cfg) as (url, _):
            signed = sign_aws("PUT", uri, ak=AK, sk=SK, service="s3", body=body, headers=claim)
            assert send(url, "PUT", uri, signed, account="acct", body=body).status == 200
        cfg = _cfg(up.url)
        cfg.endpoints[0].max_body_bytes = 1024 * 1024
        with proxy_running(cfg) as (url, _):
            signed = sign_aws("PUT", uri, ak=AK, sk=SK, service="s3", body=body, headers=claim)
            assert send(url, "PUT", uri, signed, account="acct", body=body).status == 413
    assert len(up.seen) == 1 and up.seen[0].body == body
