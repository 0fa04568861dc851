"""Helpers shared by the AWS signer tests (botocore request <-> SigningRequest, clocks,
vector files), and tests that pin the helpers themselves."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from botocore import auth as botoauth
from botocore.awsrequest import AWSRequest
from multidict import CIMultiDict

from keybroker.credentials import Credential
from keybroker.secret import Secret
from keybroker.signers.base import SigningRequest

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "aws"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def from_botocore(req: AWSRequest) -> SigningRequest:
    """The wire form of a botocore request: host as botocore signs it (default port dropped)."""
    parts = urlsplit(req.url)
    host = parts.netloc
    name, _, port = host.rpartition(":")
    if name and _DEFAULT_PORTS.get(parts.scheme) == port:
        host = name
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in req.headers.items():
        headers.add(key, value if isinstance(value, str) else value.decode())
    return SigningRequest(req.method, host, parts.path or "/", parts.query, headers, parts.scheme)


def body_of(req: AWSRequest) -> bytes:
    data = req.body
    if data is None:
        return b""
    return data if isinstance(data, bytes) else str(data).encode()


def to_botocore(req: SigningRequest, body: bytes, *, drop: tuple[str, ...] = ()) -> AWSRequest:
    """An AWSRequest for ``req`` (without ``drop`` headers), for botocore to re-sign."""
    headers = {k: v for k, v in req.headers.items() if k.lower() not in drop}
    return AWSRequest(method=req.method, url=req.url(), headers=headers, data=body)


@contextmanager
def botocore_clock(when: _dt.datetime) -> Iterator[None]:
    """Pin botocore's signing clock (it reads a naive UTC datetime)."""
    naive = when.astimezone(_dt.UTC).replace(tzinfo=None)
    with mock.patch.object(botoauth, "get_current_datetime", lambda: naive):
        yield


def credential(access_key: str, secret_key: str, token: str | None = None) -> Credential:
    return Credential(access_key, Secret(secret_key), Secret(token) if token else None)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def generator() -> ModuleType:
    """``tests/vectors/aws/generate.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("aws_vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vector_request(case: dict[str, Any]) -> SigningRequest:
    headers: CIMultiDict[str] = CIMultiDict((k, v) for k, v in case["headers"])
    return SigningRequest(case["method"], case["host"], case["path"], case["query"], headers)


# -- the helpers themselves -------------------------------------------------------------------


def test_from_botocore_keeps_the_wire_form() -> None:
    req = AWSRequest(
        method="PUT",
        url="https://b.s3.amazonaws.com:443/a%20b?x=1&y=%2F",
        headers={"X-Amz-Meta-A": "1"},
        data=b"body",
    )
    sreq = from_botocore(req)
    assert (sreq.method, sreq.host, sreq.path, sreq.query) == (
        "PUT",
        "b.s3.amazonaws.com",
        "/a%20b",
        "x=1&y=%2F",
    )
    assert sreq.headers["x-amz-meta-a"] == "1"
    assert body_of(req) == b"body"


def test_from_botocore_keeps_a_non_default_port() -> None:
    sreq = from_botocore(AWSRequest(method="GET", url="http://127.0.0.1:4566/"))
    assert sreq.host == "127.0.0.1:4566"
    assert sreq.scheme == "http"


def test_botocore_clock_pins_the_signing_time() -> None:
    when = _dt.datetime(2021, 2, 3, 4, 5, 6, tzinfo=_dt.UTC)
    with botocore_clock(when):
        assert botoauth.get_current_datetime() == when.replace(tzinfo=None)
