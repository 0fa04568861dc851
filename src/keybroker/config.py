"""keybroker's configuration: key-proxy's ``config.yml`` (PascalCase keys), plus our additions.

The dataclasses below are the Python form (the seed's library use: build a ``Config``, create
the proxy, run it).  ``load(path)`` / ``loads(text)`` read the YAML form and ``validate`` checks
either form; every problem is reported with its field path (and line, for YAML).

Defaults differ from key-proxy where key-proxy is insecure: both ``Forbidden`` flags default to
``true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keybroker.credentials import Credential

__all__ = [
    "AuditConfig",
    "Config",
    "Endpoint",
    "ForbiddenConfig",
    "HttpConfig",
    "LogConfig",
    "SecurityConfig",
    "TlsConfig",
]


@dataclass
class TlsConfig:
    """``Http.Tls``: serve HTTPS on ``address`` instead of plain HTTP."""

    enabled: bool = False
    address: str = ":443"
    cert_file: str = ""
    key_file: str = ""


@dataclass
class HttpConfig:
    """``Http``.  ``address`` is ``host:port`` or ``:port`` (all interfaces)."""

    address: str = ":3888"
    tls: TlsConfig = field(default_factory=TlsConfig)
    # ours
    max_header_bytes: int = 16 * 1024  # MaxHeaderBytes: total size of request headers
    max_body_bytes: int = 64 * 1024 * 1024  # MaxBodyBytes: bound on a buffered body
    upstream_connect_timeout: float = 10.0  # UpstreamConnectTimeout (seconds)
    upstream_read_timeout: float = 300.0  # UpstreamReadTimeout (seconds between reads)
    shutdown_timeout: float = 30.0  # ShutdownTimeout: drain deadline (seconds)


@dataclass
class LogConfig:
    """``Log``: directory ``output`` holds ``key_proxy.log``; rotation by ``max_size`` MB,
    files older than ``max_age`` days pruned.  ``output: ""`` or ``"-"`` logs to stderr."""

    output: str = "./output/log"
    level: str = "info"
    max_age: int = 14
    max_size: int = 100


@dataclass
class AuditConfig:
    """``Audit``: declared by key-proxy, never built there."""

    output: str = "./output/audit"
    enabled: bool = False
    max_age: int = 90
    max_size: int = 100


@dataclass
class ForbiddenConfig:
    """``Forbidden``: key-proxy's flags, secure by default (``true`` when absent)."""

    forbidden_account_not_found: bool = True
    forbidden_proxy_credential_err: bool = True


@dataclass
class SecurityConfig:
    """``Security`` (ours): freshness window for signed requests."""

    clock_skew_seconds: int = 900


@dataclass
class Endpoint:
    """One cloud account (``Endpoints[i]``)."""

    cloud_account_name: str
    vendor: str
    proxy: Credential
    real: Credential
    upstream: str | None = None  # ours: base URL override, e.g. an emulator


@dataclass
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    forbidden: ForbiddenConfig = field(default_factory=ForbiddenConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    endpoints: list[Endpoint] = field(default_factory=list)
