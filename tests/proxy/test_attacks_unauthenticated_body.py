"""Attack on "at most 8 KiB of an unauthenticated body is read": a client without the proxy
secret, knowing only a proxy access key id (it travels in clear in every request's
``Authorization``), forges a SigV4 header for a service whose body the proxy must hash itself
(no ``X-Amz-Content-Sha256``) and sends a large body.  The signature cannot be checked before
the body's hash is known, so the proxy reads (and spools to disk) the whole body, up to
``Http.MaxBodyBytes``, before it answers 401."""

from __future__ import annotations

import secrets
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import recording_upstream

AK, SK, REAL_SK = "AKIDPROXYUNAUTH00001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _forge(total: int, sent: int) -> bytes:
    """The first bytes of the proxy's answer to a forged request announcing ``total`` body
    bytes of which ``sent`` are sent (b"" when it is still waiting for more)."""
    cfg = Config(endpoints=[aws_endpoint("acct", AK, SK, "AKIAREALUNAUTH000001", REAL_SK, "")])
    with recording_upstream() as up:
        cfg.endpoints[0].upstream = up.url
        with proxy_running(cfg) as (url, _):
            parts = urlsplit(url)
            now = datetime.now(UTC)
            amz = now.strftime("%Y%m%dT%H%M%SZ")
            auth = (
                f"AWS4-HMAC-SHA256 Credential={AK}/{now:%Y%m%d}/us-east-1/logs/aws4_request, "
                f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={'0' * 64}"
            )
            head = (
                "POST / HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\n"
                "Content-Type: application/x-amz-json-1.1\r\n"
                "X-Amz-Target: Logs_20140328.PutLogEvents\r\n"
                f"X-Amz-Date: {amz}\r\nAuthorization: {auth}\r\n"
                f"Content-Length: {total}\r\n\r\n"
            ).encode()
            with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
                sock.sendall(head + b"x" * sent)
                sock.settimeout(5)
                try:
                    answer = sock.recv(4096)
                except TimeoutError:
                    answer = b""  # still waiting for the rest of the unauthenticated body
            assert up.seen == []
            return answer


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="a forged SigV4 request naming a known proxy access key makes the proxy read the "
    "whole body (up to Http.MaxBodyBytes) before the signature can be checked",
)
def test_forged_signature_with_a_known_key_is_refused_before_the_body_is_read() -> None:
    answer = _forge(32 * 1024 * 1024, 64 * 1024)
    assert answer.startswith(b"HTTP/1.1 4"), "the proxy kept reading a forged request"


def test_forged_signature_with_a_whole_body_is_refused() -> None:
    """Not vacuous: once the body is complete the forgery is a 401."""
    assert _forge(64 * 1024, 64 * 1024).startswith(b"HTTP/1.1 401")
