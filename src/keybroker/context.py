"""The per-request record shared by the proxy, its hooks and the access log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["RequestContext"]


@dataclass
class RequestContext:
    """What hooks see of a request: never a secret (the Authorization is not included)."""

    #: the proxy's own id of this request (128 random bits, hex): logs, audit, hooks
    request_id: str
    mode: str
    method: str
    remote: str | None
    #: the ``X-Mcdn-Request-Id`` the client sent (printable ASCII, at most 128 characters),
    #: kept beside the proxy's own id — never in its place
    client_request_id: str | None = None
    account: str | None = None
    vendor: str | None = None
    service: str | None = None
    region: str | None = None
    action: str | None = None
    #: what the action acts on (``bucket/key``), when the signer knows
    resource: str | None = None
    #: the signer classified the operation as read-only (None: not classified yet)
    read_only: bool | None = None
    upstream_url: str | None = None
    status: int | None = None
    error_code: str | None = None
    #: why the upstream failed (``UpstreamFailure.kind``: dns, refused, timeout, tls, ...)
    upstream_failure: str | None = None
    started: float = field(default_factory=time.perf_counter)
    bytes_out: int = 0
    #: the request target without credential parameters (audit)
    path: str | None = None
    #: why the proxy refused the request (an error message: names the rule, never a secret)
    reason: str | None = None
    #: the policy that let an allowed request through (audit)
    rule: str | None = None
    #: its audit record was written before it was forwarded; the outcome record follows
    audited_ahead: bool = False

    @property
    def reply_id(self) -> str:
        """The id an error answer's ``RequestId`` echoes: the client's when it sent one (as
        key-proxy does), else the proxy's own."""
        return self.client_request_id or self.request_id
