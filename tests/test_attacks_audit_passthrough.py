"""The audit record of a request the operator let through unverified must say it went out.

With ``ForbiddenProxyCredentialErr: false`` a request whose proxy signature does not verify
is forwarded as it came to the vendor's public host; with ``ForbiddenAccountNotFound: false``
a request for an unknown account is forwarded unsigned.  The write-ahead record of such a
request said ``"decision": "deny"`` (the signature-mismatch code made it look refused), so an
auditor listing what the platform sent upstream (``decision == "allow"``) never saw the
requests the proxy forwarded without verifying them; the unknown account's record named no
account and no rule at all.  The vendor hosts are unreachable here (no DNS): the record is
written before the connection is tried, which is what write-ahead means.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from keybroker.settings import AuditConfig, Config, ForbiddenConfig
from tests import logscan
from tests.proxy.conftest import aws_endpoint
from tests.proxy.harness import proxy_running
from tests.proxy.platform import send, sign_aws
from tests.proxy.recording_upstream import recording_upstream

STS = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity"


def _records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "audit.log").read_text().splitlines()]


def _run(tmp_path: Path, account: str, sk: str | None, **flags: bool) -> list[dict[str, Any]]:
    ak, proxy_sk = "AKIDPASS" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    real_sk = secrets.token_urlsafe(24)
    logscan.register(proxy_sk, real_sk)
    folder = logscan.log_dir(tmp_path / "audit")
    with recording_upstream() as up:
        cfg = Config(
            forbidden=ForbiddenConfig(**flags),
            audit=AuditConfig(output=str(folder), enabled=True),
            endpoints=[aws_endpoint("acct", ak, proxy_sk, "AKIAREAL0000PASS", real_sk, up.url)],
        )
        with proxy_running(cfg) as (url, _):
            signed = sign_aws("GET", STS, ak=ak, sk=sk or proxy_sk, service="sts")
            r = send(url, "GET", STS, signed, account=account)
            assert r.status == 502, r.body  # it went for the vendor's host (unreachable)
    assert up.seen == []
    return [x for x in _records(folder) if x.get("event") == "request"]


def test_an_unverified_request_forwarded_is_recorded_as_allowed(tmp_path: Path) -> None:
    records = _run(tmp_path, "acct", "wrong", forbidden_proxy_credential_err=False)
    assert len(records) == 1, records
    record = records[0]
    assert record["decision"] == "allow", record
    assert record["account"] == "acct" and record["upstream_host"], record
    assert "ForbiddenProxyCredentialErr" in str(record["rule"]), record


def test_an_unknown_account_forwarded_is_recorded_with_its_name_in_the_rule(tmp_path: Path) -> None:
    records = _run(tmp_path, "ghost", None, forbidden_account_not_found=False)
    assert len(records) == 1, records
    record = records[0]
    assert record["decision"] == "allow", record
    assert record["account"] is None, record  # a metrics label: configured accounts only
    assert "ForbiddenAccountNotFound" in str(record["rule"]), record
    assert "'ghost'" in str(record["rule"]), record


@pytest.mark.parametrize("sync", [0.2, 0.0])
def test_a_client_gone_during_the_write_ahead_leaves_one_request_record(
    tmp_path: Path, sync: float
) -> None:
    """The client disconnects while its write-ahead record waits for its fsync (the server
    cancels the handler): the line is in the file already, but the request was marked as not
    recorded ahead, so finishing it wrote a second ``request`` record (also ``allow``) for
    the same request id, where an ``outcome`` belongs: two requests allowed for one that never
    went upstream."""
    import asyncio
    import contextlib

    from keybroker.audit.trail import AuditLog
    from keybroker.context import RequestContext
    from keybroker.proxy.recording import record_audit, write_ahead

    log = AuditLog(tmp_path, sync=sync)  # a 200 ms batch window, or each line's own fsync

    async def scenario() -> RequestContext:
        ctx = RequestContext(request_id="r-gone", mode="keyproxy", method="PUT", remote="::1")
        task = asyncio.ensure_future(write_ahead(ctx, log))
        await asyncio.sleep(0.02 if sync else 0)
        task.cancel()  # what connection_lost does to the handler
        with contextlib.suppress(asyncio.CancelledError):
            await task
        record_audit(ctx, log)  # what finish() does in the handler's finally
        return ctx

    asyncio.run(scenario())
    log.close()
    events = [(x["event"], x["request_id"]) for x in _records(tmp_path)]
    assert events == [("request", "r-gone"), ("outcome", "r-gone")], events
