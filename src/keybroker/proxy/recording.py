"""What each request leaves behind: its audit records, access-log line, metrics and hooks.

A request that goes upstream has its audit record written *ahead* (:func:`write_ahead`, called
by the forwarder just before the upstream request starts), durable as ``Audit.Sync`` asks; when
it cannot be written the request is refused (503, ``Audit.FailClosed``).  Once the answer is
out, :func:`finish` writes the access-log line, the metrics and the second audit record — the
outcome, linked by request id — or, for a request that never went upstream, its only record
(a failing audit there is counted and logged loudly: the answer is gone already).  Then, for
every request, the library's ``after_response`` hooks (see :mod:`keybroker.proxy.hooks`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from keybroker.audit.event import outcome_event, request_event
from keybroker.audit.trail import AuditLog
from keybroker.context import RequestContext
from keybroker.errors import ServiceUnavailable
from keybroker.logs.setup import request_log_line
from keybroker.metrics import instruments as metrics
from keybroker.proxy.hooks import HookFn, run_hooks

__all__ = ["AUDIT_UNAVAILABLE", "finish", "record_audit", "write_ahead"]

AUDIT_UNAVAILABLE = "the audit log cannot be written; the request was not forwarded"

log = logging.getLogger("keybroker.proxy")


async def write_ahead(ctx: RequestContext, audit: AuditLog | None) -> None:
    """Record ``ctx`` before it goes upstream.  Raises ``ServiceUnavailable`` (503) when the
    record cannot be written, unless ``Audit.FailClosed`` is false (then it goes on, counted
    and logged)."""
    if audit is None or not audit.enabled:
        return
    try:
        # what is written ahead goes upstream: allowed, even when forwarded unverified
        await audit.commit(request_event(ctx, decision="allow"))
    except asyncio.CancelledError:
        # the client went away while the line waited for its fsync: the line is written
        # (commit writes it before it waits), so what is recorded next is its outcome
        ctx.audited_ahead = True
        raise
    except (OSError, ValueError, TypeError) as exc:
        _failed(ctx, exc)
        if audit.fail_closed:
            raise ServiceUnavailable(AUDIT_UNAVAILABLE, retry_after=1) from None
        return
    ctx.audited_ahead = True


def record_audit(ctx: RequestContext, audit: AuditLog | None) -> None:
    """The outcome of a request recorded ahead, or the only record of one that was not."""
    if audit is None or not audit.enabled:
        return
    event = outcome_event(ctx) if ctx.audited_ahead else request_event(ctx)
    try:
        # nothing waits on it: written now, made durable by the next fsync of the file
        audit.record(event, durable=False)
    except (OSError, ValueError, TypeError) as exc:
        _failed(ctx, exc)  # the answer is gone already: loud in the log and the metrics


def _failed(ctx: RequestContext, exc: Exception) -> None:
    metrics.DEFAULT.audit_failures.inc(("file",))
    log.error(
        "audit record failed: %s",
        type(exc).__name__,
        extra={"fields": {"request_id": ctx.request_id}},
    )


async def finish(ctx: RequestContext, audit: AuditLog | None, after: list[HookFn]) -> None:
    """Once the answer is out: the access-log line, metrics and audit record of a proxied or
    key-service request, then the ``after_response`` hooks (a failing hook is only logged)."""
    if ctx.mode in ("keyproxy", "native", "keyservice"):
        request_log_line(
            request_id=ctx.request_id,
            client_request_id=ctx.client_request_id,
            method=ctx.method,
            # a key-service request is addressed natively; its action says "keyservice:"
            mode="native" if ctx.mode == "keyservice" else ctx.mode,
            status=ctx.status or 0,
            account=ctx.account,
            vendor=ctx.vendor,
            service=ctx.service,
            action=ctx.action,
            upstream_host=ctx.upstream_url,
            bytes_out=ctx.bytes_out,
            latency_ms=(time.perf_counter() - ctx.started) * 1000,
            error_code=ctx.error_code,
        )
        metrics.DEFAULT.observe(ctx)
        record_audit(ctx, audit)
    if not after:
        return
    try:
        await run_hooks(after, ctx)
    except Exception:
        log.exception("after_response hook failed")
