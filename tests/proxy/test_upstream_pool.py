"""The upstream pool through the whole proxy: an answer without a body whose server said
``Connection: close`` (moto/Werkzeug answers HEAD so) must not leave a dead connection in the
pool, and an upstream that breaks off before the first body byte gets the client a 502, never
a cut connection (a client retrying that request would be refused as a replay)."""

from __future__ import annotations

import http.client
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from keybroker.config import Config, HttpConfig
from tests import logscan
from tests.proxy.conftest import AwsSetup, aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws

STS = "https://sts.us-east-1.amazonaws.com/"
AK, SK = "AKIDPROXYPOOL0000001", secrets.token_urlsafe(24)
REAL_SK = secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _s3_request(aws: AwsSetup, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One SigV4 request, as an unmodified client sends it, on a new client connection."""
    url = aws.proxy_url + path
    req = AWSRequest(method=method, url=url, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(aws.proxy_ak, aws.proxy_sk), "s3", "us-east-1").add_auth(req)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, path, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_head_then_get_through_moto_does_not_hang(aws: AwsSetup) -> None:
    """s3cmd's download: HEAD, then GET, each on its own client connection."""
    s3 = aws.real_client("s3")
    s3.create_bucket(Bucket="pool-head")
    s3.put_object(Bucket="pool-head", Key="k", Body=b"0123456789")
    for _ in range(3):
        started = time.monotonic()
        status, headers, _ = _s3_request(aws, "HEAD", "/pool-head/k")
        assert status == 200 and headers["Content-Length"] == "10"
        status, _, body = _s3_request(aws, "GET", "/pool-head/k")
        assert (status, body) == (200, b"0123456789")
        s3.delete_object(Bucket="pool-head", Key="gone")  # 204 (with close) in between
        status, _, body = _s3_request(aws, "GET", "/pool-head/k")
        assert (status, body) == (200, b"0123456789")
        assert time.monotonic() - started < 3.0


@contextmanager
def _breaks_off(answer: bytes) -> Iterator[str]:
    """Reads each request, writes ``answer`` (a head promising more), then closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


def test_upstream_breaking_off_before_the_body_is_a_502() -> None:
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n",
    ):
        with _breaks_off(answer) as up:
            real = aws_endpoint("acct", AK, SK, "AKIAREALPOOL00000001", REAL_SK, up)
            with proxy_running(Config(http=HttpConfig(), endpoints=[real])) as (url, _):
                signed = sign_aws(
                    "GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts"
                )
                r = send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
        assert r.status == 502, answer
        meta = r.json()["ResponseMetadata"]
        assert meta["Error"]["Code"] == "Proxy.NetworkErr"
        assert meta["RequestId"] == "platform-req-1"
