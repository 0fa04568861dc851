"""Forwarding a request as it came, without a signature the proxy computed.

Only when the operator turned a refusal off:

* ``ForbiddenAccountNotFound: false`` — a key-proxy request for an unknown account goes on
  unsigned, and only to a public API host of a known vendor;
* ``ForbiddenProxyCredentialErr: false`` — a request whose proxy signature does not verify
  goes on exactly as it came, and only to the vendor's public API host (never ``Upstream``).

Plain functions, called directly by :class:`keybroker.proxy.app.Proxy`.
"""

from __future__ import annotations

from keybroker.context import RequestContext
from keybroker.errors import SignatureMismatch
from keybroker.http.messages import Request, StreamResponse
from keybroker.proxy.forwarding import Forwarder, read_bounded
from keybroker.proxy.routing import Route, public_request, vendor_scope
from keybroker.proxy.spool import SpooledBody
from keybroker.settings import HttpConfig

__all__ = ["UNSIGNED_RULE", "UNVERIFIED_RULE", "pass_unsigned", "pass_unverified"]

#: the audit record's ``rule`` of a request forwarded because a Forbidden flag is off
UNSIGNED_RULE = "Forbidden.ForbiddenAccountNotFound false: unknown account, forwarded unsigned"
UNVERIFIED_RULE = (
    "Forbidden.ForbiddenProxyCredentialErr false: signature not verified, forwarded as it came"
)


async def pass_unsigned(
    request: Request, ctx: RequestContext, route: Route, forwarder: Forwarder, http: HttpConfig
) -> StreamResponse:
    """Unknown account with ``ForbiddenAccountNotFound: false``: pass the request on as it
    came, only to a public API host of a known vendor."""
    if route.dest is None:
        raise ValueError("pass_unsigned needs a key-proxy route")
    vendor_scope(route.vendor_hint).require(route.dest)
    # the name goes into the record's rule, not ctx.account: that is a metrics label, which
    # only configured accounts may set (any name a client sends would be a new series)
    name = request.headers.get("x-mcdn-cloud-account-name", "")[:64]
    ctx.rule = f"{UNSIGNED_RULE} (account {name!r})"
    ctx.upstream_url = f"{route.dest.scheme}://{route.dest.host}"
    up = route.signed.copy()
    body = await read_bounded(request, http.max_body_bytes, http.client_timeout)
    return await forwarder.forward(request, ctx, up, body, None)


async def pass_unverified(
    request: Request,
    ctx: RequestContext,
    route: Route,
    body: bytes | SpooledBody | None,
    forwarder: Forwarder,
    http: HttpConfig,
) -> StreamResponse:
    """``ForbiddenProxyCredentialErr: false``: forward exactly what came, never a signature
    the proxy computed, and only to the vendor's own public API host — never the account's
    ``Upstream`` or ``AllowedHosts``, whose servers would otherwise take any method and body
    from anyone who knows an account name."""
    up = public_request(route)
    ctx.upstream_url = f"{up.scheme}://{up.host}"
    ctx.error_code = SignatureMismatch.code
    ctx.rule = UNVERIFIED_RULE
    if body is None:
        body = await read_bounded(request, http.max_body_bytes, http.client_timeout)
    return await forwarder.forward(request, ctx, up, body, None)
