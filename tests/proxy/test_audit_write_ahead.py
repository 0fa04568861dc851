"""The audit record is written before a byte goes upstream, and a request that cannot be
recorded is not forwarded: a full disk (a real tmpfs filled up) gives 503 with nothing reaching
the upstream, and once space returns the same chain continues and verifies."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from keybroker.audit.keys import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    generate_key_pair,
    load_public_key,
)
from keybroker.audit.proof import verify_keyed
from keybroker.audit.verify import verify
from keybroker.settings import AuditConfig, Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream

AK, SK, REAL_SK = "AKIDPROXYAHEAD000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)
S3 = "https://s3.us-east-1.amazonaws.com/bucket/evidence"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` until ENOSPC; return the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as caught:
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    assert caught.value.errno == errno.ENOSPC
    return filler


def failures(url: str) -> float:
    """``keybroker_audit_failures_total{sink="file"}`` as the proxy's /metrics shows it."""
    text = requests.get(url + "/metrics", timeout=10).text
    found = re.search(r'^keybroker_audit_failures_total\{sink="file"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _delete(url: str, n: int) -> tuple[int, dict[str, object]]:
    uri = f"{S3}-{n}"
    signed = sign_aws("DELETE", uri, ak=AK, sk=SK, service="s3")
    r = send(url, "DELETE", uri, signed, account="acct", extra={"X-Mcdn-Request-Id": f"del-{n}"})
    body: dict[str, object] = json.loads(r.body) if r.body.startswith(b"{") else {}
    return r.status, body


@pytest.mark.parametrize("sync", ["always", "5ms"])
def test_full_disk_refuses_before_forwarding_and_the_chain_continues(
    tmp_path: Path, sync: str
) -> None:
    generate_key_pair(tmp_path / "keys")
    signing_key = str(tmp_path / "keys" / PRIVATE_KEY_NAME)
    with small_tmpfs(tmp_path / "audit") as audit_dir, recording_upstream() as up:
        audit = AuditConfig(output=str(audit_dir), enabled=True, sync=sync, signing_key=signing_key)
        cfg = Config(
            audit=audit,
            endpoints=[aws_endpoint("acct", AK, SK, "AKIAREALAHEAD0000001", REAL_SK, up.url)],
        )
        with proxy_running(cfg) as (url, _):
            assert _delete(url, 0)[0] == 200
            assert len(up.seen) == 1
            filler = fill(audit_dir)
            # the file's last page may still hold a line or two: go on until the disk is full
            n = 1
            while _delete(url, n)[0] == 200:
                n += 1
                assert n < 20, "the audit never ran out of space"
            seen, before = len(up.seen), failures(url)
            for n in range(n + 1, n + 13):
                status, body = _delete(url, n)
                assert status == 503, body
                error = body["ResponseMetadata"]["Error"]  # type: ignore[index]
                assert error["Code"] == "Proxy.ServiceUnavailable"
            assert len(up.seen) == seen, "a request reached the upstream without its record"
            assert failures(url) >= before + 12
            filler.unlink()  # space returns
            assert _delete(url, 99)[0] == 200
            assert len(up.seen) == seen + 1
        lines = [json.loads(x) for x in (audit_dir / "audit.log").read_text().splitlines()]
        result = verify(audit_dir)
        assert result.ok, result
        proof = verify_keyed(audit_dir, load_public_key(tmp_path / "keys" / PUBLIC_KEY_NAME))
        assert proof.ok and proof.unproven == 0, proof  # the shutdown checkpoint covers all
    assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
    assert sum("start" in x for x in lines) == 1, "a new genesis chain began"
    forwarded = {x["client_request_id"] for x in lines if x.get("decision") == "allow"}
    assert {"del-0", "del-99"} <= forwarded and len(forwarded) == len(up.seen)
    assert [s.path_qs.rsplit("-", 1)[1] for s in up.seen] == [
        rid.rsplit("-", 1)[1] for rid in sorted(forwarded, key=lambda r: int(r[4:]))
    ]


def test_audit_fail_open_forwards_and_counts(tmp_path: Path) -> None:
    """``Audit.FailClosed: false``: availability chosen; the request goes on, counted."""
    with small_tmpfs(tmp_path / "audit") as audit_dir, recording_upstream() as up:
        cfg = Config(
            audit=AuditConfig(output=str(audit_dir), enabled=True, fail_closed=False),
            endpoints=[aws_endpoint("acct", AK, SK, "AKIAREALAHEAD0000001", REAL_SK, up.url)],
        )
        with proxy_running(cfg) as (url, _):
            filler = fill(audit_dir)
            before = failures(url)
            assert _delete(url, 1)[0] == 200
            assert len(up.seen) == 1
            assert failures(url) >= before + 1
            os.unlink(filler)


@pytest.mark.slow
def test_full_disk_key_service_hands_out_no_key(tmp_path: Path) -> None:
    """The key service records a key operation before the key goes out: with the audit's disk
    full no key is handed out (503), and once space returns the same call succeeds."""
    from tests.proxy.test_audit_everything import mixed_proxy

    with small_tmpfs(tmp_path / "audit") as audit_dir, mixed_proxy(tmp_path, audit_dir) as (kb, _):
        assert kb.call("GET", "dek/tenant-a/k0", who="full").status_code == 200
        filler = fill(audit_dir)
        refused = [kb.call("GET", f"dek/tenant-a/k{n}", who="full") for n in range(1, 6)]
        assert refused[-1].status_code == 503, refused[-1].text
        assert "plaintext" not in refused[-1].json()
        handed = len(kb.sent)
        # every answer after the disk filled is a 503 without a key
        assert handed == 1 + sum(r.status_code == 200 for r in refused)
        filler.unlink()
        assert kb.call("GET", "dek/tenant-a/k9", who="full").status_code == 200
        assert len(kb.sent) == handed + 1
        result = verify(audit_dir)
        assert result.ok, result
