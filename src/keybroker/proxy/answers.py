"""What the proxy answers by itself, without asking an upstream.

* a refusal or error: in the vendor's own error shape for a natively addressed request when
  its signer has one (:meth:`keybroker.signers.Signer.native_error`), else key-proxy's JSON
  (``ResponseMetadata``);
* the health, readiness and metrics endpoints (``/ping``, ``/healthz``, ``/readyz``,
  ``/metrics``).

Every answer carries ``X-Mcdn-Proxy-Version`` (forwarded answers too: see
:class:`keybroker.proxy.forwarding.Forwarder`).
"""

from __future__ import annotations

from collections.abc import Sequence

from keybroker import __version__, signers
from keybroker.context import RequestContext
from keybroker.errors import Forbidden, ProxyError
from keybroker.http.messages import Request, Response, json_response
from keybroker.metrics import instruments as metrics
from keybroker.metrics.families import CONTENT_TYPE
from keybroker.proxy import policy
from keybroker.signers.base import ErrorAnswer

__all__ = ["error_response", "health_response", "version_headers"]


def version_headers() -> dict[str, str]:
    return {"X-Mcdn-Proxy-Version": __version__}


def error_response(
    ctx: RequestContext, exc: ProxyError, request: Request | None = None
) -> Response:
    ctx.status, ctx.error_code, ctx.reason = exc.status, exc.code, exc.message
    headers = {**version_headers(), "X-Mcdn-Proxy-Status": "Failed"}
    headers["X-Mcdn-Request-Id"] = ctx.reply_id
    headers["X-Keybroker-Request-Id"] = ctx.request_id
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    native = _native_error(ctx, exc, request) if ctx.mode == "native" else None
    if native is not None:
        headers.update(native.headers)
        return Response(
            body=native.body, status=exc.status, headers=headers, content_type=native.content_type
        )
    payload = {
        "ResponseMetadata": {
            "Error": {"Code": exc.code, "Message": exc.message},
            "RequestId": ctx.reply_id,
            "Version": __version__,
        }
    }
    # A refusal before the body arrived (a client waiting for 100-continue never sends
    # it) closes the connection: StreamResponse.prepare sees the body incomplete.
    return json_response(payload, status=exc.status, headers=headers)


def _native_error(
    ctx: RequestContext, exc: ProxyError, request: Request | None
) -> ErrorAnswer | None:
    """The refusal in the shape the SDKs of ``ctx.vendor`` parse, if its signer has one."""
    if request is None or not ctx.vendor or ctx.vendor not in signers.known_vendors():
        return None
    lowered = {k.lower(): v for k, v in request.headers.items()}
    signer = signers.get(ctx.vendor)
    return signer.native_error(ctx.service, lowered, exc.code, exc.message, ctx.reply_id)


def health_response(
    request: Request, metrics_client_cidrs: Sequence[str], ready: bool
) -> Response | None:
    """The answer to ``/ping``, ``/metrics``, ``/healthz`` or ``/readyz`` (``ready``: what
    ``/readyz`` says); ``None`` for any other request (a signed or addressed request is never
    a health check).  Raises ``Forbidden`` for ``/metrics`` from outside
    ``metrics_client_cidrs`` (``Security.MetricsClientCIDRs``)."""
    if request.method != "GET" or "authorization" in request.headers:
        return None
    if "x-mcdn-origin-uri" in request.headers or request.query_string:
        return None
    if request.path == "/ping":
        return Response(text="pong", headers=version_headers())
    if request.path == "/metrics":
        if not policy.ip_allowed(request.remote, metrics_client_cidrs):
            raise Forbidden("this client address may not read the metrics")
        body = metrics.DEFAULT.render().encode("utf-8")
        headers = {**version_headers(), "Content-Type": CONTENT_TYPE}
        return Response(body=body, headers=headers)
    if request.path == "/healthz":
        return json_response({"status": "ok"}, headers=version_headers())
    if request.path == "/readyz":
        return json_response(
            {"status": "ready" if ready else "draining"},
            status=200 if ready else 503,
            headers=version_headers(),
        )
    return None
