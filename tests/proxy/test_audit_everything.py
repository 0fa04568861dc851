"""Everything that arrives is in the audit log, and a flood of refusals costs bounded records.

A mixed run against one proxy (key-proxy mode, the key service on the same port, a recording
upstream): valid signed requests, a presigned DELETE, bad signatures, malformed HTTP,
Content-Length with Transfer-Encoding, a header block past the HTTP layer's bound (431), a head
that never ends (408) and key-service calls — each leaves its record (the presigned one
without its signature or the real one).  Then 400 identical malformed requests from one
source fold into a handful of ``refused`` records whose counts add up to 400."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

from keybroker.audit.verify import verify
from keybroker.settings import AuditConfig, Config, KeyServiceConfig
from tests import logscan
from tests.keyservice.helpers import PREFIX, KeyBroker, local_kms, standard_accounts
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import Recorder, recording_upstream

AK, SK, REAL_SK = "AKIDPROXYMIXED000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
STS = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"


@contextmanager
def mixed_proxy(tmp: Path, audit_dir: Path | None = None) -> Iterator[tuple[KeyBroker, Recorder]]:
    kms_uri, storage_uri = local_kms(tmp)
    accounts = standard_accounts()
    audit_dir = audit_dir or logscan.log_dir(tmp / "audit")
    with recording_upstream() as up:
        config = Config(
            audit=AuditConfig(output=str(audit_dir), enabled=True, sync="2ms"),
            endpoints=[
                aws_endpoint("acct", AK, SK, "AKIAREALMIXED0000001", REAL_SK, up.url),
                *(a.endpoint() for a in accounts.values()),
            ],
            key_service=KeyServiceConfig(
                enabled=True, path_prefix=PREFIX, kms=kms_uri, storage=storage_uri
            ),
        )
        config.http.client_timeout = 1.0
        with proxy_running(config) as (url, thread):
            yield KeyBroker(url, thread, accounts, kms_uri, storage_uri, audit_dir), up


def raw(url: str, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; what the server answers before it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return got


def audit_lines(kb: KeyBroker) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (kb.audit_dir / "audit.log").read_text().splitlines()]


@pytest.mark.slow
def test_every_request_of_a_mixed_run_has_its_record(tmp_path: Path) -> None:
    with mixed_proxy(tmp_path) as (kb, up):
        for i in range(3):
            uri = f"{STS}&n={i}"
            signed = sign_aws("GET", uri, ak=AK, sk=SK, service="sts")
            r = send(
                kb.url, "GET", uri, signed, account="acct", extra={"X-Mcdn-Request-Id": f"ok{i}"}
            )
            assert r.status == 200
        for i in range(2):
            signed = sign_aws("GET", STS, ak=AK, sk="wrong", service="sts")
            r = send(
                kb.url, "GET", STS, signed, account="acct", extra={"X-Mcdn-Request-Id": f"bad{i}"}
            )
            assert r.status == 401
        for _ in range(3):
            assert raw(kb.url, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
        clte = (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        assert raw(kb.url, clte).startswith(b"HTTP/1.1 400")
        huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
        assert raw(kb.url, huge).startswith(b"HTTP/1.1 431")
        assert raw(kb.url, b"GET / HTTP/1.1\r\nHost: x\r\n").startswith(b"HTTP/1.1 408")
        presigned = boto3.client(
            "s3",
            endpoint_url=kb.url,
            region_name="us-east-1",
            aws_access_key_id=AK,
            aws_secret_access_key=SK,
            config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
        ).generate_presigned_url("delete_object", Params={"Bucket": "bkt", "Key": "a b.txt"})
        assert requests.delete(presigned, timeout=10).status_code == 200
        assert kb.call("GET", "dek/tenant-a/m1", who="full").status_code == 200
        assert kb.call("GET", "dek/tenant-b/m1", who="tenant-a").status_code == 403
        assert kb.call("GET", "dek/tenant-a/m1", secret="wrong").status_code == 401
        time.sleep(1.5)  # the refusals are folded for a second
        lines = audit_lines(kb)
        text = (kb.audit_dir / "audit.log").read_text()
        assert len(up.seen) == 4
    assert verify(kb.audit_dir).ok
    by_client: dict[str, list[str]] = {}
    events = {x["request_id"]: x for x in lines if x.get("event") == "request"}
    for line in lines:
        if line.get("event") in ("request", "outcome"):
            client = events[line["request_id"]].get("client_request_id")
            by_client.setdefault(str(client), []).append(line["event"])
    for i in range(3):
        assert by_client[f"ok{i}"] == ["request", "outcome"]
    for i in range(2):
        assert by_client[f"bad{i}"] == ["request"]
        bad = next(x for x in events.values() if x.get("client_request_id") == f"bad{i}")
        assert bad["decision"] == "deny" and bad["status"] == 401
    # the presigned DELETE: recorded without its signature, credential or the real ones
    (deleted,) = [x for x in events.values() if x.get("method") == "DELETE"]
    assert deleted["path"].startswith("/bkt/a%20b.txt") and deleted["decision"] == "allow"
    upstream_query = parse_qs(urlsplit(up.seen[-1].path_qs).query)
    for name in ("X-Amz-Signature", "X-Amz-Credential"):
        assert name not in deleted["path"]
        assert upstream_query[name][0] not in text
    assert parse_qs(urlsplit(presigned).query)["X-Amz-Signature"][0] not in text
    refused = [x for x in lines if x.get("event") == "refused"]
    counted = {}
    for x in refused:
        assert x["source_ip"] == "127.0.0.1"
        counted[x["reason"]] = counted.get(x["reason"], 0) + x["count"]
    assert sum(counted.values()) == 3 + 1 + 1 + 1, counted
    assert counted.get("request header fields too large") == 1
    assert counted.get("request headers not received in time") == 1
    keys = [x for x in lines if x.get("event") == "key"]
    assert [(k["operation"], k["decision"]) for k in keys] == [
        ("create", "allow"),
        ("get", "deny"),
        ("get", "deny"),
    ]
    service_calls = [x for x in events.values() if str(x.get("path", "")).startswith(PREFIX)]
    assert len(service_calls) == 3


@pytest.mark.slow
def test_a_flood_of_identical_malformed_requests_yields_bounded_records(tmp_path: Path) -> None:
    with mixed_proxy(tmp_path) as (kb, _):
        started = time.monotonic()
        for _ in range(400):
            raw(kb.url, b"\x16\x03\x01 not http\r\n\r\n", wait=2.0)
        elapsed = time.monotonic() - started
        time.sleep(1.5)
        refused = [x for x in audit_lines(kb) if x.get("event") == "refused"]
    assert sum(x["count"] for x in refused) == 400
    # one record per second of flood at most (plus the window the flood straddles)
    assert 1 <= len(refused) <= int(elapsed) + 2, (len(refused), elapsed)
