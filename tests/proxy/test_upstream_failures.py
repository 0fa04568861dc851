"""Upstream failures: 502 Proxy.NetworkErr with a request id, timeouts, nothing half-written."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from keybroker.settings import Config, HttpConfig
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.servers import free_port

STS = "https://sts.us-east-1.amazonaws.com/"
AK, SK = "AKIDPROXYFAIL0000001", secrets.token_urlsafe(24)
REAL_SK = secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _cfg(upstream: str, **http: float) -> Config:
    return Config(
        http=HttpConfig(**http),  # type: ignore[arg-type]
        endpoints=[aws_endpoint("acct", AK, SK, "AKIAREALFAIL00000001", REAL_SK, upstream)],
    )


def _signed() -> dict[str, str]:
    return sign_aws("GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts")


def test_unreachable_upstream_is_502_with_request_id() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with proxy_running(_cfg(closed)) as (url, _):
        r = send(url, "GET", STS + "?Action=GetCallerIdentity", _signed(), account="acct")
    assert r.status == 502
    meta = r.json()["ResponseMetadata"]
    assert meta["Error"]["Code"] == "Proxy.NetworkErr"
    assert meta["RequestId"] == "platform-req-1"
    assert "127.0.0.1" not in meta["Error"]["Message"]  # no internals in the answer
    # ... but what kind of failure it was: the operator's first question
    assert meta["Error"]["Message"] == "the upstream could not be reached (refused)"


@contextmanager
def _raw_upstream(behaviour: str) -> Iterator[str]:
    """A TCP server that hangs without answering, or answers half a body then closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            conn.recv(65536)
            if behaviour == "half":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
                conn.close()
        for c in conns:
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.mark.slow
def test_hanging_upstream_times_out_with_502() -> None:
    with (
        _raw_upstream("hang") as up,
        proxy_running(_cfg(up, upstream_read_timeout=0.5)) as (url, _),
    ):
        r = send(url, "GET", STS + "?Action=GetCallerIdentity", _signed(), account="acct")
    assert r.status == 502
    error = r.json()["ResponseMetadata"]["Error"]
    assert error["Code"] == "Proxy.NetworkErr"
    assert error["Message"].endswith("(timeout)")


def test_upstream_dying_mid_body_cuts_the_connection() -> None:
    with _raw_upstream("half") as up, proxy_running(_cfg(up)) as (url, _):
        signed = _signed()
        headers = {k: v for k, v in signed.items() if k != "Host"}
        headers.update(
            {
                "X-Mcdn-Origin-Uri": STS + "?Action=GetCallerIdentity",
                "X-Mcdn-Cloud-Account-Name": "acct",
                "X-Mcdn-Kept-Headers": "authorization,x-amz-date",
            }
        )
        got = b""
        try:
            r = requests.get(url, headers=headers, timeout=10, stream=True)
            for chunk in r.iter_content(256):
                got += chunk
            complete = True
        except requests.exceptions.RequestException:
            complete = False
    # never a short body presented as complete
    assert not complete or len(got) == 1000
    assert len(got) < 1000


def test_proxy_keeps_serving_after_failures() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with proxy_running(_cfg(closed)) as (url, _):
        for _ in range(20):
            r = send(url, "GET", STS + "?Action=GetCallerIdentity", _signed(), account="acct")
            assert r.status == 502
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
