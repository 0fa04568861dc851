"""Every proxied request leaves its audit records (ahead of the forward and its outcome, or
one for a refusal); editing a line breaks verification."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from keybroker.settings import AuditConfig, Config
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream

STS = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"
AK, SK, REAL_SK = "AKIDPROXYAUDIT000001", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
logscan.register(SK, REAL_SK)


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keybroker", "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_audit_records_ahead_and_after_and_tamper_detection(tmp_path: Path) -> None:
    audit_dir = logscan.log_dir(tmp_path / "audit")
    with recording_upstream() as up:
        cfg = Config(
            audit=AuditConfig(output=str(audit_dir), enabled=True),
            endpoints=[aws_endpoint("acct", AK, SK, "AKIAREALAUDIT0000001", REAL_SK, up.url)],
        )
        with proxy_running(cfg) as (url, _):
            ids = []
            for i in range(6):
                sk = SK if i % 2 == 0 else "wrong-secret"
                signed = sign_aws("GET", STS, ak=AK, sk=sk, service="sts")
                rid = f"req-{i}"
                r = send(url, "GET", STS, signed, account="acct", extra={"X-Mcdn-Request-Id": rid})
                assert r.status == (200 if i % 2 == 0 else 401)
                ids.append(rid)
            send(url, "GET", STS, {}, account="nobody", extra={"X-Mcdn-Request-Id": "req-unknown"})
            ids.append("req-unknown")
    lines = [json.loads(x) for x in (audit_dir / "audit.log").read_text().splitlines()]
    # the proxy's own ids (a client's X-Mcdn-Request-Id never becomes the audit's request id)
    own = {x["request_id"] for x in lines}
    assert len(own) == len(ids) and not own & set(ids)
    assert all(len(x) == 32 and int(x, 16) >= 0 for x in own)
    # an allowed request: its record written ahead of the forward, then its outcome, linked
    # by the proxy's request id; the client's id is kept beside it
    client_of = {x["request_id"]: x["client_request_id"] for x in lines if x["event"] == "request"}
    expected = []
    for i, rid in enumerate(ids[:6]):
        expected += [(rid, "request"), (rid, "outcome")] if i % 2 == 0 else [(rid, "request")]
    expected.append(("req-unknown", "request"))
    assert [(client_of[x["request_id"]], x["event"]) for x in lines] == expected
    requests = [x for x in lines if x["event"] == "request"]
    assert [x["decision"] for x in requests] == ["allow", "deny"] * 3 + ["deny"]
    first = requests[0]
    assert first["account"] == "acct" and first["service"] == "sts"
    assert first["method"] == "GET" and first["path"] == "/?Action=GetCallerIdentity"
    assert first["status"] is None and lines[1]["status"] == 200 and lines[1]["bytes_out"] > 0
    assert first["upstream_host"] == up.url.removeprefix("http://")
    assert first["rule"] == "no policy restriction"
    assert requests[1]["error_code"] == "Proxy.ValidateCredentialErr"
    assert requests[1]["rule"] and requests[1]["status"] == 401
    assert requests[1]["path"] == "/?Action=GetCallerIdentity"  # the origin URI's target
    text = (audit_dir / "audit.log").read_text()
    assert SK not in text and REAL_SK not in text
    ok = _verify(audit_dir)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 10 lines"), ok.stdout + ok.stderr
    # edit one field of line 3: verification fails at exactly that line
    raw = (audit_dir / "audit.log").read_text().splitlines(keepends=True)
    raw[2] = raw[2].replace('"decision":"deny"', '"decision":"allow"')
    (audit_dir / "audit.log").write_text("".join(raw))
    bad = _verify(audit_dir)
    assert bad.returncode == 1
    assert "audit.log:3:" in bad.stdout
