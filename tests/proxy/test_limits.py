"""Limits: concurrent requests per account, slow clients, mutual TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keybroker.settings import Config, HttpConfig, TlsConfig
from tests import logscan, replay_servers
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream
from tests.servers import free_port

redis_url = replay_servers.redis_url
STS = "https://sts.us-east-1.amazonaws.com/"
AK, SK, REAL_SK = "AKIDPROXYLIMIT000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _cfg(upstream: str, http: HttpConfig | None = None, **ep_extra: object) -> Config:
    ep = aws_endpoint("acct", AK, SK, "AKIAREALLIMIT0000001", REAL_SK, upstream)
    for k, v in ep_extra.items():
        setattr(ep, k, v)
    return Config(http=http or HttpConfig(), endpoints=[ep])


@pytest.mark.slow
def test_concurrent_requests_per_account_get_503_with_retry_after() -> None:
    with (
        recording_upstream(delay=1.0) as up,
        proxy_running(_cfg(up.url, max_concurrent_requests=2)) as (url, _),
    ):
        results: list[int] = []

        def one() -> None:
            signed = sign_aws("GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts")
            results.append(
                send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct").status
            )

        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # both are now in flight at the (slow) upstream
        signed = sign_aws("GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts")
        third = send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
        for t in threads:
            t.join(10)
        assert third.status == 503
        assert third.headers["Retry-After"] == "1"
        assert third.json()["ResponseMetadata"]["Error"]["Code"] == "Proxy.TooManyRequests"
        assert sorted(results) == [200, 200]
        # the slots are released: the next one passes
        signed = sign_aws("GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts")
        assert (
            send(url, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct").status
            == 200
        )


@pytest.mark.slow
def test_slow_client_body_gets_408() -> None:
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    with (
        recording_upstream() as up,
        proxy_running(_cfg(up.url, HttpConfig(client_timeout=0.5))) as (url, _),
    ):
        signed = sign_aws("POST", STS, ak=AK, sk=SK, service="sts", body=body, headers=form)
        head = [
            "POST / HTTP/1.1",
            "Host: proxy",
            f"Content-Length: {len(body)}",
            f"X-Mcdn-Origin-Uri: {STS}",
            "X-Mcdn-Cloud-Account-Name: acct",
            "X-Mcdn-Kept-Headers: authorization,x-amz-date,content-type",
        ]
        head += [f"{k}: {v}" for k, v in signed.items() if k != "Host"]
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[:10])  # then stall
            reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    assert b"Proxy.RequestTimeout" in reply
    assert up.seen == []


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key, ca_cert, name: str, server: bool):  # type: ignore[no-untyped-def]
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
    return key, b.sign(ca_key, hashes.SHA256())


def _write(tmp: Path, name: str, key, cert) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    c, k = tmp / f"{name}.crt", tmp / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(c), str(k)


def test_mutual_tls(tmp_path: Path) -> None:
    ca_key, ca = _ca("platform CA")
    other_key, other_ca = _ca("someone else")
    srv_crt, srv_key = _write(tmp_path, "server", *_leaf(ca_key, ca, "127.0.0.1", True))
    good = _write(tmp_path, "good", *_leaf(ca_key, ca, "platform", False))
    bad = _write(tmp_path, "bad", *_leaf(other_key, other_ca, "intruder", False))
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    port = free_port()
    tls = TlsConfig(
        enabled=True,
        address=f"127.0.0.1:{port}",
        cert_file=srv_crt,
        key_file=srv_key,
        client_ca_file=str(ca_file),
    )
    with recording_upstream() as up, proxy_running(_cfg(up.url, HttpConfig(tls=tls))) as (_url, pt):
        base = f"https://127.0.0.1:{pt.proxy.ports[0]}"
        assert (
            requests.get(base + "/ping", cert=good, verify=str(ca_file), timeout=5).text == "pong"
        )
        for cert in (None, bad):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.get(base + "/ping", cert=cert, verify=str(ca_file), timeout=5)
    assert ssl.OPENSSL_VERSION


def test_concurrency_limit_shared_by_two_servers_through_redis(redis_url: str) -> None:
    from keybroker.settings import SecurityConfig

    with recording_upstream(delay=1.0) as up:
        cfgs = [_cfg(up.url, max_concurrent_requests=1) for _ in range(2)]
        for cfg in cfgs:
            cfg.security = SecurityConfig(replay_cache="off", rate_limit_store=redis_url)
        with proxy_running(cfgs[0]) as (a, _), proxy_running(cfgs[1]) as (b, _):
            results: list[int] = []

            def slow() -> None:
                signed = sign_aws(
                    "GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts"
                )
                results.append(
                    send(a, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct").status
                )

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.4)
            signed = sign_aws("GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts")
            other = send(b, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
            t.join(10)
            assert other.status == 503 and other.headers["Retry-After"] == "1"
            assert results == [200]
            # released: server B can take it now.  Server A gives the slot back in Redis just
            # after the answer's last bytes are written, so allow it a moment.
            statuses = []
            for _ in range(20):
                signed = sign_aws(
                    "GET", STS + "?Action=GetCallerIdentity", ak=AK, sk=SK, service="sts"
                )
                sent = send(b, "GET", STS + "?Action=GetCallerIdentity", signed, account="acct")
                statuses.append(sent.status)
                if sent.status == 200:
                    break
                time.sleep(0.05)
            assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
