"""What each request leaves behind once it is answered (or failed).

For a proxied or key-service request: the access-log line, the metrics and the audit record
(a failing audit is logged loudly, never raised: the answer is gone already).  Then, for every
request, the library's ``after_response`` hooks (see :mod:`keybroker.hooks`).
"""

from __future__ import annotations

import logging
import time

from keybroker import metrics
from keybroker.audit import AuditLog, request_event
from keybroker.context import RequestContext
from keybroker.hooks import HookFn, run_hooks
from keybroker.logs import request_log_line

__all__ = ["finish", "record_audit"]

log = logging.getLogger("keybroker.proxy")


def record_audit(ctx: RequestContext, audit: AuditLog | None) -> None:
    if audit is None or not audit.enabled:
        return
    try:
        audit.record(request_event(ctx))
    except (OSError, ValueError, TypeError) as exc:
        # the answer is gone already; a failing audit must be loud in the log
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
