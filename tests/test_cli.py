"""The ``keybroker`` command as a user runs it: a real process, real signals, real log files."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import signal
import subprocess
import threading
from pathlib import Path

import boto3
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import logscan
from tests.procs import KEYBROKER, run_keybroker
from tests.proxy.recording_upstream import recording_upstream
from tests.servers import free_port, port_open, wait_until

pytestmark = pytest.mark.slow  # runs keybroker as a process: outside scripts/test --fast

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.yml"


def _config(
    tmp: Path, port: int, upstream: str, *, real_sk: str, proxy_sk: str, tls: str = ""
) -> Path:
    text = f"""
Http:
  Address: "127.0.0.1:{port}"
  ShutdownTimeout: 20
{tls}
Log:
  Output: {tmp / "log"}
  Level: debug
  MaxAge: 1
  MaxSize: 1
Endpoints:
  - CloudAccountName: "acct"
    Vendor: "aws"
    Upstream: "{upstream}"
    Credentials:
      Proxy:
        AccessKey: "AKIDPROXYCLI00000001"
        SecretKey: "{proxy_sk}"
      Real:
        AccessKey: "AKIAREALCLI000000001"
        SecretKey: "${{file:{tmp / "real_sk"}}}"
"""
    (tmp / "real_sk").write_text(real_sk + "\n")
    path = tmp / "config.yml"
    path.write_text(text)
    logscan.register(real_sk, proxy_sk)
    logscan.log_dir(tmp / "log")
    return path


def test_check_example_config_prints_summary_without_secrets() -> None:
    r = run_keybroker("check", "--config", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert "aws-demo" in r.stdout and "volc-demo" in r.stdout
    for secret in ("proxy-secret-made-up-by-you", "real-secret-goes-here", "another-proxy-secret"):
        assert secret not in r.stdout


def test_check_broken_config_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("Endpoints:\n  - CloudAccountName: a\n    Vendor: awz\n")
    r = run_keybroker("check", "-conf-file", str(bad))
    assert r.returncode == 1
    assert "Endpoints[0].Vendor" in r.stderr and "awz" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    r = run_keybroker("-conf-file", str(tmp_path / "nope.yml"))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr


def test_serve_drains_in_flight_requests_on_sigterm_and_logs_without_secrets(
    tmp_path: Path,
) -> None:
    port = free_port()
    real_sk, proxy_sk = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
    with recording_upstream(delay=1.5) as up:
        cfg = _config(tmp_path, port, up.url, real_sk=real_sk, proxy_sk=proxy_sk)
        proc = subprocess.Popen([*KEYBROKER, "-conf-file", str(cfg)])
        try:
            wait_until(port_open(port), what="keybroker serve")
            sts = boto3.client(
                "sts",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="AKIDPROXYCLI00000001",
                aws_secret_access_key=proxy_sk,
            )
            result: dict[str, object] = {}

            def call() -> None:
                try:
                    result["r"] = sts.get_caller_identity()
                except Exception as exc:  # the assertion below reports it
                    result["e"] = exc

            t = threading.Thread(target=call)
            t.start()
            wait_until(lambda: len(up.seen) == 1, what="request at upstream")
            proc.send_signal(signal.SIGTERM)
            t.join(30)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "e" not in result, result.get("e")
    assert result["r"]["Arn"].endswith(":user/recorded")  # type: ignore[index]
    assert (
        up.seen[0]
        .headers["Authorization"]
        .startswith("AWS4-HMAC-SHA256 Credential=AKIAREALCLI000000001/")
    )
    lines = [json.loads(x) for x in (tmp_path / "log" / "key_proxy.log").read_text().splitlines()]
    access = [x for x in lines if x.get("logger") == "keybroker.access"]
    assert len(access) == 1 and access[0]["status"] == 200 and access[0]["request_id"]
    text = (tmp_path / "log" / "key_proxy.log").read_text()
    assert real_sk not in text and proxy_sk not in text


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls.crt", tmp / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_serves_https_on_tls_address(tmp_path: Path) -> None:
    port = free_port()
    cert, key = _self_signed(tmp_path)
    tls = (
        f'  Tls:\n    Enabled: true\n    Address: "127.0.0.1:{port}"\n'
        f'    CertFile: "{cert}"\n    KeyFile: "{key}"'
    )
    real_sk, proxy_sk = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
    with recording_upstream() as up:
        cfg = _config(tmp_path, free_port(), up.url, real_sk=real_sk, proxy_sk=proxy_sk, tls=tls)
        proc = subprocess.Popen([*KEYBROKER, "serve", "--config", str(cfg)])
        try:
            wait_until(port_open(port), what="keybroker tls")

            def pong() -> bool:
                # the port is bound before the workers run: the first handshake can wait for one
                try:
                    r = requests.get(f"https://127.0.0.1:{port}/ping", verify=str(cert), timeout=5)
                except requests.exceptions.Timeout:
                    return False
                return r.text == "pong"

            wait_until(pong, timeout=60, what="keybroker tls answering")
            sts = boto3.client(
                "sts",
                endpoint_url=f"https://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="AKIDPROXYCLI00000001",
                aws_secret_access_key=proxy_sk,
                verify=str(cert),
            )
            sts.get_caller_identity()
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/ping", timeout=5)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
    assert len(up.seen) == 1
