"""The interop matrix's servers, started once per session: moto (SigV4 enforced, shared with
the other tests), the relays in front of it, and one keybroker holding the real key with one
account (proxy key) per upstream."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from keybroker.settings import Config
from tests import logscan
from tests.interop import upstreams
from tests.interop.clients import MIB, PART, PRESIGNED_BUCKET, PRESIGNED_KEY
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running

UPSTREAMS = ["moto", "aiohttp", "nginx", "raw-close", "raw-chunked"]


@dataclass
class Matrix:
    url: str  # keybroker
    keys: dict[str, tuple[str, str]]  # upstream -> proxy (access key, secret)
    urls: dict[str, str]  # upstream -> its URL
    big: Path
    data: bytes
    presigned_data: bytes
    frames: dict[str, upstreams.FramingServer]


@pytest.fixture(scope="session")
def matrix(
    moto_auth: tuple[str, str, str], moto_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    plain_moto = moto_url
    moto_url, real_ak, real_sk = moto_auth
    moto_port = int(moto_url.rsplit(":", 1)[1])
    root = tmp_path_factory.mktemp("interop")
    data = secrets.token_bytes(PART + MIB // 8 + 1)  # two parts, an odd size
    (root / "src").mkdir()
    big = root / "src" / "big"
    big.write_bytes(data)
    with contextlib.ExitStack() as stack:
        urls = {"moto": moto_url}
        urls["aiohttp"] = stack.enter_context(upstreams.aiohttp_relay(moto_url))
        if upstreams.have_nginx():
            urls["nginx"] = stack.enter_context(upstreams.nginx_relay(moto_port, root / "nginx"))
        frames = {}
        for mode in ("close", "chunked"):
            frame = stack.enter_context(upstreams.FramingServer(moto_port, mode))
            frames[f"raw-{mode}"] = frame
            urls[f"raw-{mode}"] = f"http://127.0.0.1:{frame.port}"
        # moto answers presigned URLs with a 500 when it enforces signatures: presigned GETs
        # go through their own account to the moto that does not
        urls["presign"] = plain_moto
        presigned_data = secrets.token_bytes(MIB // 4 + 3)
        _put(plain_moto, presigned_data)
        keys, endpoints = {}, []
        for name, url in urls.items():
            ak = "AKIDINTEROP" + secrets.token_hex(5).upper()
            sk = secrets.token_urlsafe(30)
            logscan.register(sk)
            keys[name] = (ak, sk)
            endpoints.append(aws_endpoint(f"interop-{name}", ak, sk, real_ak, real_sk, url))
        # The replay protection on, as deployed (the default: mutating requests single use);
        # the clients' own retries are off, so an answer lost here fails its cell instead of
        # being retried.
        url, _ = stack.enter_context(proxy_running(Config(endpoints=endpoints), replay=True))
        yield Matrix(url, keys, urls, big, data, presigned_data, frames)


def _put(url: str, data: bytes) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket=PRESIGNED_BUCKET)
    s3.put_object(Bucket=PRESIGNED_BUCKET, Key=PRESIGNED_KEY, Body=data)
