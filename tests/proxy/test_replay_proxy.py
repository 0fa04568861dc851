"""Replay protection: a captured valid request is refused the second time — in one process,
across the worker processes of one server, and across servers sharing a real Redis."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keybroker.settings import Config, SecurityConfig
from tests import logscan, replay_servers
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import Recorder, recording_upstream
from tests.servers import free_port, port_open, wait_until

redis_url = replay_servers.redis_url
# a call that changes something: single use under the default ReplayProtection (mutating)
STS = "https://sts.us-east-1.amazonaws.com/?Action=AssumeRole&RoleArn=r&RoleSessionName=s"
AK, SK, REAL_SK = "AKIDPROXYREPLAY00001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _cfg(upstream: str, replay: str = "memory") -> Config:
    ep = aws_endpoint("acct", AK, SK, "AKIAREALREPLAY000001", REAL_SK, upstream)
    return Config(security=SecurityConfig(replay_cache=replay), endpoints=[ep])


@pytest.fixture
def upstream() -> Iterator[Recorder]:
    with recording_upstream() as up:
        yield up


def test_second_use_is_refused_in_process(upstream: Recorder) -> None:
    with proxy_running(_cfg(upstream.url), replay=True) as (url, _):
        captured = sign_aws("GET", STS, ak=AK, sk=SK, service="sts")
        first = send(url, "GET", STS, captured, account="acct")
        second = send(url, "GET", STS, captured, account="acct")
        fresh = sign_aws("GET", STS + "&n=2", ak=AK, sk=SK, service="sts")
        third = send(url, "GET", STS + "&n=2", fresh, account="acct")
    assert first.status == 200 and third.status == 200
    assert second.status == 401
    assert second.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.Replay"
    assert len(upstream.seen) == 2


def test_replay_off_lets_identical_requests_through(upstream: Recorder) -> None:
    with proxy_running(_cfg(upstream.url, "off"), replay=True) as (url, _):
        captured = sign_aws("GET", STS, ak=AK, sk=SK, service="sts")
        assert [send(url, "GET", STS, captured, account="acct").status for _ in range(2)] == [
            200,
            200,
        ]


def test_two_servers_share_redis(upstream: Recorder, redis_url: str) -> None:
    cfg_a, cfg_b = _cfg(upstream.url, redis_url), _cfg(upstream.url, redis_url)
    with proxy_running(cfg_a, replay=True) as (a, _), proxy_running(cfg_b, replay=True) as (b, _):
        captured = sign_aws("GET", STS + "&r=1", ak=AK, sk=SK, service="sts")
        assert send(a, "GET", STS + "&r=1", captured, account="acct").status == 200
        replayed = send(b, "GET", STS + "&r=1", captured, account="acct")
    assert replayed.status == 401
    assert replayed.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.Replay"


def _replay_cache_errors() -> float:
    from keybroker.metrics import instruments as metrics
    from tests.test_metrics import parse

    family = parse(metrics.DEFAULT.render())["keybroker_replay_cache_errors_total"]
    return family.get("keybroker_replay_cache_errors_total")


def test_redis_down_fails_closed_with_503(upstream: Recorder) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    before = _replay_cache_errors()
    with proxy_running(_cfg(upstream.url, dead), replay=True) as (url, _):
        captured = sign_aws("GET", STS + "&d=1", ak=AK, sk=SK, service="sts")
        r = send(url, "GET", STS + "&d=1", captured, account="acct")
    assert r.status == 503
    assert r.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.ServiceUnavailable"
    assert upstream.seen == []
    # what the KeybrokerReplayCacheDown alert watches (deploy/prometheus/alerts.yml)
    assert _replay_cache_errors() - before == 1


@pytest.mark.slow
def test_replay_across_worker_processes(tmp_path: Path, upstream: Recorder) -> None:
    """Workers: 2 with the default in-memory cache, shared through the supervisor: replays
    that land on the other worker are refused too (the log shows both workers answered)."""
    port = free_port()
    log_dir = logscan.log_dir(tmp_path / "log")
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"""Http:
  Address: "127.0.0.1:{port}"
  Workers: 2
Log: {{Output: {log_dir}, Level: info}}
Endpoints:
  - CloudAccountName: acct
    Vendor: aws
    Upstream: "{upstream.url}"
    Credentials:
      Proxy: {{AccessKey: "{AK}", SecretKey: "{SK}"}}
      Real: {{AccessKey: "AKIAREALREPLAY000001", SecretKey: "{REAL_SK}"}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "keybroker", "serve", "--config", str(cfg)])
    try:
        wait_until(port_open(port), what="keybroker")
        url = f"http://127.0.0.1:{port}"
        captured = sign_aws("GET", STS + "&w=1", ak=AK, sk=SK, service="sts")
        statuses = [
            send(url, "GET", STS + "&w=1", captured, account="acct").status for _ in range(30)
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert statuses.count(200) == 1 and statuses.count(401) == 29, statuses
    lines = [json.loads(x) for x in (log_dir / "key_proxy.log").read_text().splitlines()]
    refused = {x["pid"] for x in lines if x.get("error_code") == "Proxy.Replay"}
    accepted = {
        x["pid"] for x in lines if x.get("logger") == "keybroker.access" and x.get("status") == 200
    }
    assert len(refused | accepted) == 2, "both workers should have answered"
    assert len(upstream.seen) == 1
