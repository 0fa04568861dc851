"""Legacy S3 tools through keybroker, unchanged: s3cmd (SigV2 headers and ``signurl``) and the
AWS CLI v1's ``aws s3 presign`` (SigV2 query URLs), verified with the proxy secret and
re-signed as SigV4 for moto, which enforces SigV4 signatures with the real key."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from keybroker.settings import Config
from tests import logscan
from tests.proxy.conftest import AwsSetup, aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.recording_upstream import Recorder, recording_upstream
from tests.proxy.test_presigned import _botocore_presigned_signature

S3CMD = shutil.which("s3cmd")
_VENV_AWS = Path(__file__).resolve().parents[2] / ".venv-awscli" / "bin" / "aws"


def _aws_cli_v1() -> str | None:
    for candidate in (str(_VENV_AWS), shutil.which("aws")):
        if candidate and os.path.exists(candidate):
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True)
            if (out.stdout + out.stderr).startswith("aws-cli/1."):
                return candidate
    return None


AWS_V1 = _aws_cli_v1()


def _s3cmd(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert S3CMD is not None
    return subprocess.run(
        [S3CMD, "-c", str(cfg), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _config(tmp: Path, aws: AwsSetup, secret: str | None = None) -> Path:
    host = aws.proxy_url.removeprefix("http://")
    cfg = tmp / f"s3cfg-{secrets.token_hex(3)}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {aws.proxy_ak}\n"
        f"secret_key = {secret or aws.proxy_sk}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        "use_https = False\nsignature_v2 = True\n"
    )
    return cfg


@pytest.mark.skipif(S3CMD is None, reason="s3cmd is not installed (scripts/setup installs it)")
def test_s3cmd_with_sigv2_headers(aws: AwsSetup, tmp_path: Path) -> None:
    cfg = _config(tmp_path, aws)
    bucket = "sigv2-" + secrets.token_hex(4)
    data = os.urandom(6 * 1024 * 1024 + 123)  # two parts of a multipart upload
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(data)

    for args in (
        ("mb", f"s3://{bucket}"),
        ("put", "--multipart-chunk-size-mb=5", str(src), f"s3://{bucket}/dir/a b+c.bin"),
        ("put", str(src), f"s3://{bucket}/small.bin"),
    ):
        r = _s3cmd(cfg, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    listed = _s3cmd(cfg, "ls", "-r", f"s3://{bucket}")
    assert listed.returncode == 0 and "dir/a b+c.bin" in listed.stdout, listed.stderr
    r = _s3cmd(cfg, "get", "--force", f"s3://{bucket}/dir/a b+c.bin", str(back))
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
    # moto holds what s3cmd sent, stored with the real key
    real = aws.real_client("s3").get_object(Bucket=bucket, Key="small.bin")["Body"].read()
    assert real == data

    forged = _config(tmp_path, aws, secret="not-the-proxy-secret-at-all")
    r = _s3cmd(forged, "ls", f"s3://{bucket}")
    assert r.returncode != 0
    r = _s3cmd(cfg, "del", f"s3://{bucket}/small.bin")
    assert r.returncode == 0, r.stderr
    assert "small.bin" not in _s3cmd(cfg, "ls", f"s3://{bucket}").stdout


@dataclass
class Recorded:
    """A proxy whose account's Upstream records requests (moto answers 500 to presigned
    URLs under auth enforcement), with the proxy and real credentials."""

    url: str
    setup: AwsSetup
    up: Recorder


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    real_ak, real_sk = "AKIAREALSIGV2URL0001", secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "AKIDPROXYSIGV2URL001", secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk)
    with recording_upstream() as up:
        cfg = Config(endpoints=[aws_endpoint("v2", proxy_ak, proxy_sk, real_ak, real_sk, up.url)])
        with proxy_running(cfg) as (url, thread):
            setup = AwsSetup(url, up.url, proxy_ak, proxy_sk, real_ak, real_sk, thread)
            yield Recorded(url, setup, up)


def _check_resigned(rec: Recorded, sent: int) -> None:
    """The last request the upstream saw is a SigV4 presigned URL signed with the real key."""
    seen = rec.up.seen[sent:]
    assert len(seen) == 1
    q = parse_qs(urlsplit(seen[0].path_qs).query)
    assert q["X-Amz-Credential"][0].startswith(rec.setup.real_ak + "/")
    assert not {"AWSAccessKeyId", "Signature", "Expires"} & set(q)
    host = rec.up.url.removeprefix("http://")
    expected = _botocore_presigned_signature(
        seen[0].path_qs, host, rec.setup.real_ak, rec.setup.real_sk
    )
    assert q["X-Amz-Signature"][0] == expected
    assert rec.setup.proxy_ak not in seen[0].path_qs


@pytest.mark.emulator  # a real program: s3cmd / the AWS CLI
@pytest.mark.skipif(S3CMD is None, reason="s3cmd is not installed (scripts/setup installs it)")
def test_s3cmd_signurl(recorded: Recorded, tmp_path: Path) -> None:
    cfg = _config(tmp_path, recorded.setup)
    url = _s3cmd(cfg, "signurl", "s3://bkt/dir/a b.txt", "+600").stdout.strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    for _ in range(2):  # a presigned URL is reusable until it expires
        sent = len(recorded.up.seen)
        got = requests.get(url, timeout=30)
        assert got.status_code == 200, got.text
        _check_resigned(recorded, sent)
    sent = len(recorded.up.seen)
    # bound to its object, its method and the proxy secret; refused once expired
    assert requests.get(url.replace("a%20b", "a%20c"), timeout=30).status_code == 401
    assert requests.delete(url, timeout=30).status_code == 401
    expired = _s3cmd(cfg, "signurl", "s3://bkt/k", str(int(time.time()) - 5)).stdout.strip()
    r = requests.get(expired, timeout=30)
    assert r.status_code == 401 and "expired" in r.text
    forged = _config(tmp_path, recorded.setup, secret="not-the-proxy-secret-at-all")
    url = _s3cmd(forged, "signurl", "s3://bkt/k", "+600").stdout.strip()
    assert requests.get(url, timeout=30).status_code == 401
    assert len(recorded.up.seen) == sent


@pytest.mark.emulator  # a real program: s3cmd / the AWS CLI
@pytest.mark.skipif(AWS_V1 is None, reason="AWS CLI v1 is not installed")
def test_aws_cli_v1_presign_makes_a_sigv2_url_that_works(recorded: Recorded) -> None:
    assert AWS_V1 is not None
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": recorded.setup.proxy_ak,
        "AWS_SECRET_ACCESS_KEY": recorded.setup.proxy_sk,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    r = subprocess.run(
        [AWS_V1, "s3", "presign", "s3://bkt/k/v.txt", "--endpoint-url", recorded.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip()
    assert "AWSAccessKeyId=" in url, url  # the CLI v1 default: Signature Version 2
    sent = len(recorded.up.seen)
    got = requests.get(url, timeout=30)
    assert got.status_code == 200, got.text
    _check_resigned(recorded, sent)


def test_sigv2_replays_are_keyed_on_the_signature() -> None:
    """With the replay cache on (the default rule): a captured SigV2 PUT sent again with
    another body, or its presigned URL respelled, is a replay; a presigned GET is reusable."""
    from botocore.auth import HmacV1Auth, HmacV1QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    real_ak, real_sk = "AKIAREALSIGV2RPL0001", secrets.token_urlsafe(30)
    proxy_ak, proxy_sk = "AKIDPROXYSIGV2RPL001", secrets.token_urlsafe(30)
    logscan.register(real_sk, proxy_sk)
    creds = Credentials(proxy_ak, proxy_sk)
    with recording_upstream() as up:
        cfg = Config(endpoints=[aws_endpoint("rp", proxy_ak, proxy_sk, real_ak, real_sk, up.url)])
        with proxy_running(cfg, replay=True) as (url, _):
            put = AWSRequest(method="PUT", url=f"{url}/bkt/k", data=b"first")
            HmacV1Auth(creds).add_auth(put)
            headers = dict(put.headers.items())
            assert requests.put(f"{url}/bkt/k", headers=headers, data=b"first").status_code == 200
            again = requests.put(f"{url}/bkt/k", headers=headers, data=b"other body")
            assert again.status_code == 401 and "Proxy.Replay" in again.text

            signed = AWSRequest(method="PUT", url=f"{url}/bkt/up")
            HmacV1QueryAuth(creds, expires=300).add_auth(signed)
            assert requests.put(signed.url, data=b"x", timeout=30).status_code == 200
            respelled = signed.url.replace("%2B", "+").replace("%2F", "/")
            if respelled == signed.url:  # no '+' or '/' in this signature: reorder instead
                base, _, query = signed.url.partition("?")
                respelled = base + "?" + "&".join(reversed(query.split("&")))
            r = requests.put(respelled, data=b"y", timeout=30)
            assert r.status_code == 401 and "Proxy.Replay" in r.text

            get = AWSRequest(method="GET", url=f"{url}/bkt/k")
            HmacV1QueryAuth(creds, expires=300).add_auth(get)
            for _ in range(2):
                assert requests.get(get.url, timeout=30).status_code == 200
    assert [s.method for s in up.seen] == ["PUT", "PUT", "GET", "GET"]


def test_keyproxy_mode_sigv2_put_and_get(aws: AwsSetup) -> None:
    """A platform built for key-proxy that signs S3 with SigV2 (botocore's HmacV1Auth) for
    the origin URI: verified, re-signed as SigV4 for moto, which enforces the real key."""
    from botocore.auth import HmacV1Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from tests.proxy.platform import send

    bucket = "kpv2-" + secrets.token_hex(4)
    aws.real_client("s3").create_bucket(Bucket=bucket)
    origin = f"https://s3.amazonaws.com/{bucket}/dir/k%20v.txt"
    for method, body in (("PUT", b"via key-proxy mode"), ("GET", b"")):
        req = AWSRequest(method=method, url=origin, data=body)
        if body:
            req.headers["Content-Type"] = "text/plain"
        HmacV1Auth(Credentials(aws.proxy_ak, aws.proxy_sk)).add_auth(req)
        signed = {k: v for k, v in req.headers.items()}
        r = send(aws.proxy_url, method, origin, signed, account="aws-main", body=body)
        assert r.status == 200, r.body
    assert r.body == b"via key-proxy mode"
    got = aws.real_client("s3").get_object(Bucket=bucket, Key="dir/k v.txt")
    assert got["Body"].read() == b"via key-proxy mode"
