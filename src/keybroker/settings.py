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
from keybroker.secret import Secret

__all__ = [
    "KEY_OPERATIONS",
    "LOOPBACK_CIDRS",
    "REPLAY_PROTECTION",
    "AuditConfig",
    "Config",
    "Endpoint",
    "ForbiddenConfig",
    "GrpcClient",
    "GrpcConfig",
    "HttpConfig",
    "KeyPolicy",
    "KeyServiceConfig",
    "LogConfig",
    "Policy",
    "SecurityConfig",
    "TlsConfig",
    "address_host",
    "all_interfaces",
    "loopback_only",
]


@dataclass
class TlsConfig:
    """``Http.Tls``: serve HTTPS on ``address`` instead of plain HTTP.

    ``client_ca_file`` (ours, ``ClientCAFile``): when set, every client must present a
    certificate issued by that CA (mutual TLS for the platform).
    """

    enabled: bool = False
    address: str = ":443"
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""


@dataclass
class HttpConfig:
    """``Http``.  ``address`` is ``host:port`` or ``:port`` (all interfaces); without one,
    keybroker listens on loopback only (key-proxy's default is every interface)."""

    address: str = "127.0.0.1:3888"
    tls: TlsConfig = field(default_factory=TlsConfig)
    # ours
    max_header_bytes: int = 16 * 1024  # MaxHeaderBytes: total size of request headers
    max_body_bytes: int = 64 * 1024 * 1024  # MaxBodyBytes: bound on a buffered body
    upstream_connect_timeout: float = 10.0  # UpstreamConnectTimeout (seconds)
    upstream_read_timeout: float = 300.0  # UpstreamReadTimeout (seconds between reads)
    shutdown_timeout: float = 30.0  # ShutdownTimeout: drain deadline (seconds)
    client_timeout: float = 60.0  # ClientTimeout: a slow client's body may stall this long
    workers: int = 0  # Workers: worker processes sharing the port (0: one per core)
    # MaxConnections / MaxConnectionsPerClient: client connections one worker process holds
    # (in all / from one address); over a cap an idle connection is closed to make room
    max_connections: int = 1024
    max_connections_per_client: int = 256

    @property
    def serving_address(self) -> str:
        """The address clients connect to: ``Tls.Address`` when TLS is on, else ``Address``."""
        return self.tls.address if self.tls.enabled else self.address


def address_host(address: str) -> str:
    """The host of ``host:port`` / ``[v6]:port`` / ``:port``, brackets removed (``""`` for
    every interface)."""
    return address.rpartition(":")[0].strip("[]")


def all_interfaces(address: str) -> bool:
    """Does a listen address mean every interface (``:port``, ``0.0.0.0``, ``::``)?"""
    return address_host(address) in ("", "0.0.0.0", "::")


def loopback_only(address: str) -> bool:
    """Does a listen address reach this machine only (``localhost`` or a loopback IP)?"""
    import ipaddress

    host = address_host(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # every interface ("" / "0.0.0.0"), or a name


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
    #: ours: ``always`` (fsync per line), ``<N>ms`` (a shared fsync per window) or ``none``
    sync: str = "always"
    #: ours: refuse (503) what cannot be recorded; ``false`` serves it anyway
    fail_closed: bool = True
    #: ours: the Ed25519 private key file that signs checkpoints (``keybroker audit init``)
    signing_key: str = ""
    #: ours: seconds between signed checkpoints
    checkpoint_interval: int = 60
    #: ours: a second sink for the same lines: ``stdout`` or ``syslog``
    mirror: str = ""
    #: the signing key's PEM when ``signing_key`` names a sealed file (opened with the
    #: ``Seal`` section while the config is read)
    signing_key_pem: Secret | None = field(default=None, compare=False, repr=False)


@dataclass
class ForbiddenConfig:
    """``Forbidden``: key-proxy's flags, secure by default (``true`` when absent)."""

    forbidden_account_not_found: bool = True
    forbidden_proxy_credential_err: bool = True


#: ``Security.ReplayProtection`` values, the default first.
REPLAY_PROTECTION = ("mutating", "all", "off")

#: Loopback networks: the default readers of ``/metrics``.
LOOPBACK_CIDRS = ("127.0.0.0/8", "::1/128")


@dataclass
class SecurityConfig:
    """``Security`` (ours).

    * ``clock_skew_seconds`` — signed requests older/newer than this are refused;
    * ``replay_cache`` — ``memory`` (default; shared by the worker processes of one server),
      ``redis://host:port/db`` (shared by several servers) or ``off``;
    * ``replay_protection`` — which signed requests are single use: ``mutating`` (default:
      every operation the signer does not know to be read-only), ``all`` or ``off``
      (:data:`REPLAY_PROTECTION`); the key service's requests are always single use;
    * ``rate_limit_store`` — where per-account concurrency counts live: ``memory`` or
      ``redis://...`` (default: the replay cache's Redis when it is one);
    * ``allowed_client_cidrs`` — if not empty, only these client addresses may connect;
    * ``metrics_client_cidrs`` — the addresses that may read ``/metrics`` (which names the
      accounts and what they do): loopback by default, empty for any client;
    * ``allow_weak_proxy_secrets`` — accept proxy secrets under 16 characters or of low
      entropy (key-proxy configs until they are rotated); reused or unscrubbable secrets
      are refused regardless.
    """

    clock_skew_seconds: int = 900
    replay_cache: str = "memory"
    replay_protection: str = "mutating"
    rate_limit_store: str = ""
    allowed_client_cidrs: list[str] = field(default_factory=list)
    metrics_client_cidrs: list[str] = field(default_factory=lambda: list(LOOPBACK_CIDRS))
    allow_weak_proxy_secrets: bool = False


@dataclass
class Policy:
    """``Endpoints[i].Policy`` (ours): what the proxy credentials of one account may do.

    Empty lists allow everything.  ``actions``/``deny_actions`` are glob patterns over
    ``service:Action`` (``ec2:Describe*``, ``s3:GetObject``, ``iam:*``); a deny wins.
    ``preset: read-only`` allows only the operations the signer classifies as reads
    (``Signer.operation``; REST reads only with GET/HEAD).  ``source_cidrs`` are the platform's
    addresses allowed to use this account.
    """

    preset: str = ""
    services: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    deny_actions: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    source_cidrs: list[str] = field(default_factory=list)


#: Key-service operations a ``KeyPolicy`` may grant (``*`` grants them all).
KEY_OPERATIONS = ("get", "create", "generate", "unwrap", "rewrap", "list", "delete", "status")


@dataclass
class KeyPolicy:
    """``Endpoints[i].KeyPolicy`` (ours): what this account may do with the key service.

    An account without a ``KeyPolicy`` may not use the key service at all.  ``operations``
    names what it may do (:data:`KEY_OPERATIONS`, or ``*``); ``prefixes`` are the key ids it may
    touch (plain, case-sensitive string prefixes such as ``tenant-a/``; empty: every id).
    """

    prefixes: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)


@dataclass
class Endpoint:
    """One cloud account (``Endpoints[i]``)."""

    cloud_account_name: str
    vendor: str
    proxy: Credential
    real: Credential
    upstream: str | None = None  # ours: base URL override, e.g. an emulator
    # ours: more proxy credentials for the same account (rotation without downtime)
    additional_proxies: list[Credential] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)  # more upstream DNS suffixes
    max_body_bytes: int | None = None  # overrides Http.MaxBodyBytes for this account
    max_concurrent_requests: int | None = None  # in flight at once; 503 + Retry-After above
    policy: Policy = field(default_factory=Policy)
    key_policy: KeyPolicy | None = None  # ours: None means no key-service access


@dataclass
class GrpcClient:
    """``KeyService.Grpc.Clients[i]`` (ours): what one mutual-TLS client may do with keys.

    ``common_name`` is matched exactly (case-sensitive) against the common name of the
    client's verified certificate; ``key_policy`` has an endpoint's ``KeyPolicy`` shape and
    meaning, its prefixes applying to the ``data_key_id`` the client sends.
    """

    common_name: str
    key_policy: KeyPolicy


@dataclass
class GrpcConfig:
    """``KeyService.Grpc``: Constellation's ``kms.API`` gRPC service on its own port.

    Plain gRPC unless ``cert_file``/``key_file`` are set; ``client_ca_file`` then demands a
    client certificate from that CA (mutual TLS).  ``clients`` (ours, needs mutual TLS): when
    set, only the certificates named there are served, each within its key policy; ``None``
    serves any client that reaches the port, as Constellation does.
    """

    enabled: bool = False
    address: str = "127.0.0.1:9000"
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    clients: list[GrpcClient] | None = None


@dataclass
class KeyServiceConfig:
    """``KeyService`` (ours): data-encryption keys served on the proxy's port.

    ``kms`` and ``storage`` are the ``kms://`` / ``storage://`` URIs of
    :func:`keybroker.kms.from_uris`; ``path_prefix`` is where the HTTP API lives on the proxy's
    port; ``max_dek_size`` bounds the size a caller may ask for (bytes); ``legacy_blobs``
    (``off`` or ``read``) is the migration setting that reads Constellation-format blobs from
    the store; ``trusted_store`` states that nobody else can write the store (see
    :mod:`keybroker.kms.binding`).
    """

    enabled: bool = False
    path_prefix: str = "/_keybroker/kms"
    kms: str = ""
    storage: str = ""
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    max_dek_size: int = 64
    legacy_blobs: str = "off"
    trusted_store: bool = False


@dataclass
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    forbidden: ForbiddenConfig = field(default_factory=ForbiddenConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    endpoints: list[Endpoint] = field(default_factory=list)
    key_service: KeyServiceConfig = field(default_factory=KeyServiceConfig)
