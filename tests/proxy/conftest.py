"""Proxy fixtures: a keybroker in front of moto (enforcing SigV4) holding the real key."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config as BotoConfig

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.settings import Config, Endpoint
from tests import logscan
from tests.proxy.harness import ProxyThread, proxy_running


@dataclass
class AwsSetup:
    proxy_url: str
    moto_url: str
    proxy_ak: str
    proxy_sk: str
    real_ak: str
    real_sk: str
    thread: ProxyThread

    def client(self, service: str, *, secret: str | None = None, access_key: str | None = None):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            endpoint_url=self.proxy_url,
            region_name="us-east-1",
            aws_access_key_id=access_key or self.proxy_ak,
            aws_secret_access_key=secret or self.proxy_sk,
            config=BotoConfig(
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
                signature_version="s3v4" if service == "s3" else None,
            ),
        )

    def real_client(self, service: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            aws_access_key_id=self.real_ak,
            aws_secret_access_key=self.real_sk,
            config=BotoConfig(
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
                signature_version="s3v4" if service == "s3" else None,
            ),
        )


def aws_endpoint(
    name: str, proxy_ak: str, proxy_sk: str, real_ak: str, real_sk: str, upstream: str
) -> Endpoint:
    return Endpoint(
        cloud_account_name=name,
        vendor="aws",
        proxy=Credential(proxy_ak, Secret(proxy_sk)),
        real=Credential(real_ak, Secret(real_sk)),
        upstream=upstream,
    )


@pytest.fixture(scope="module")
def aws(moto_auth: tuple[str, str, str]) -> Iterator[AwsSetup]:
    moto_url, real_ak, real_sk = moto_auth
    proxy_ak, proxy_sk = "AKIDPROXY" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    logscan.register(proxy_sk)
    config = Config(
        endpoints=[aws_endpoint("aws-main", proxy_ak, proxy_sk, real_ak, real_sk, moto_url)]
    )
    with proxy_running(config) as (url, thread):
        yield AwsSetup(url, moto_url, proxy_ak, proxy_sk, real_ak, real_sk, thread)
