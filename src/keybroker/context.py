"""The per-request record shared by the proxy, its hooks and the access log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["RequestContext"]


@dataclass
class RequestContext:
    """What hooks see of a request: never a secret (the Authorization is not included)."""

    request_id: str
    mode: str
    method: str
    remote: str | None
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
    started: float = field(default_factory=time.perf_counter)
    bytes_out: int = 0
