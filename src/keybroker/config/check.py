"""The rules every :class:`~keybroker.settings.Config` must satisfy, and how problems are told.

:func:`validate` checks a ``Config`` built in Python; :mod:`keybroker.config.loader` runs the
same checks (:func:`check_config`) after reading YAML.  Problems are collected in a
:class:`~keybroker.config.problems.Problems` (each with the line of the YAML node it is about,
when there is one) and raised together as one ``ConfigError``; messages name fields, never a
credential's value.  This module checks the Http, Log, Audit, Forbidden and Security sections,
the endpoints and their credentials; :mod:`keybroker.config.check_keyservice` checks the
KeyService section and key policies.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from keybroker import signers
from keybroker.audit.keys import load_signer
from keybroker.audit.mirror import mirror_problem
from keybroker.audit.sync import parse_sync
from keybroker.config.check_credentials import check_credential_hygiene
from keybroker.config.check_keyservice import check_key_policy, check_key_service
from keybroker.config.problems import (
    Problems,
    address_problem,
    clip,
    is_type,
    positive,
    readable_problem,
)
from keybroker.credentials import Credential
from keybroker.errors import ConfigError
from keybroker.secret import Secret
from keybroker.settings import (
    REPLAY_PROTECTION,
    AuditConfig,
    Config,
    Endpoint,
    ForbiddenConfig,
    HttpConfig,
    LogConfig,
    Policy,
    SecurityConfig,
    TlsConfig,
)

__all__ = [
    "KEY_PROXY_VENDORS",
    "LOG_LEVELS",
    "POLICY_PRESETS",
    "check_config",
    "required_credential_keys",
    "validate",
]

LOG_LEVELS = ("debug", "info", "warn", "warning", "error")

#: Every vendor code key-proxy knows; the ones without a registered signer are "not supported
#: yet" rather than "unknown".
KEY_PROXY_VENDORS = tuple(signers.BUILTIN_VENDORS)

# Http's limits and timeouts, all > 0: (key, attribute, whole number?).
_HTTP_LIMITS = (
    ("MaxHeaderBytes", "max_header_bytes", True),
    ("MaxBodyBytes", "max_body_bytes", True),
    ("UpstreamConnectTimeout", "upstream_connect_timeout", False),
    ("UpstreamReadTimeout", "upstream_read_timeout", False),
    ("ShutdownTimeout", "shutdown_timeout", False),
    ("ClientTimeout", "client_timeout", False),
    ("MaxConnections", "max_connections", True),
    ("MaxConnectionsPerClient", "max_connections_per_client", True),
)
_FORBIDDEN_FLAGS = (
    ("ForbiddenAccountNotFound", "forbidden_account_not_found"),
    ("ForbiddenProxyCredentialErr", "forbidden_proxy_credential_err"),
)


# --- checks shared by YAML and Python configs ------------------------------------------------

_FIELD_KEYS = {
    "access_key": "AccessKey",
    "secret_key": "SecretKey",
    "access_token": "AccessToken",
    "client_token": "ClientToken",
    "client_secret": "ClientSecret",
}


def required_credential_keys(vendor: str) -> tuple[str, ...]:
    """The credential keys ``vendor``'s scheme needs (AccessKey + SecretKey unless it says)."""
    try:
        signer = signers.get(vendor)
    except KeyError:
        return ("AccessKey", "SecretKey")
    return tuple(_FIELD_KEYS[f] for f in signer.credential_fields)


def _check_http(http: HttpConfig, p: Problems) -> None:
    for key, attr, integer in _HTTP_LIMITS:
        positive(p, f"Http.{key}", getattr(http, attr), integer=integer)
    if isinstance(http.workers, bool) or not isinstance(http.workers, int) or http.workers < 0:
        p.check("Http.Workers", "expected an integer >= 0 (0: one worker per core)")
    for path, address in (("Http.Address", http.address), ("Http.Tls.Address", http.tls.address)):
        if problem := address_problem(address):
            p.check(path, problem)
    tls = http.tls
    if not is_type(p, "Http.Tls.Enabled", tls.enabled, bool, "a boolean") or not tls.enabled:
        return
    for key, value in (("CertFile", tls.cert_file), ("KeyFile", tls.key_file)):
        if not value or not isinstance(value, str):
            p.check(f"Http.Tls.{key}", "required when Http.Tls.Enabled is true")
        elif problem := readable_problem(value):
            p.check(f"Http.Tls.{key}", problem)


def _check_sections(cfg: Config, p: Problems) -> None:
    level = cfg.log.level
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        shown = clip(level) if isinstance(level, str) else type(level).__name__
        p.check("Log.Level", f"expected one of {', '.join(LOG_LEVELS)}, got '{shown}'")
    for section, obj in (("Log", cfg.log), ("Audit", cfg.audit)):
        is_type(p, f"{section}.Output", obj.output, str, "a string")
        # <= 0 is allowed: key-proxy reads it as "use the default".
        is_type(p, f"{section}.MaxAge", obj.max_age, int, "an integer")
        is_type(p, f"{section}.MaxSize", obj.max_size, int, "an integer")
    is_type(p, "Audit.Enabled", cfg.audit.enabled, bool, "a boolean")
    _check_audit(cfg.audit, p)
    for key, attr in _FORBIDDEN_FLAGS:
        is_type(p, f"Forbidden.{key}", getattr(cfg.forbidden, attr), bool, "a boolean")
    positive(p, "Security.ClockSkewSeconds", cfg.security.clock_skew_seconds, integer=True)
    _check_store(p, "Security.ReplayCache", cfg.security.replay_cache, ("memory", "off"))
    _check_word(p, "Security.ReplayProtection", cfg.security.replay_protection, REPLAY_PROTECTION)
    _check_store(p, "Security.RateLimitStore", cfg.security.rate_limit_store, ("", "memory"))
    _check_cidrs(p, "Security.AllowedClientCIDRs", cfg.security.allowed_client_cidrs)
    _check_cidrs(p, "Security.MetricsClientCIDRs", cfg.security.metrics_client_cidrs)
    if not isinstance(cfg.security.allow_weak_proxy_secrets, bool):
        p.check("Security.AllowWeakProxySecrets", "expected true or false")


def _check_audit(audit: AuditConfig, p: Problems) -> None:
    is_type(p, "Audit.FailClosed", audit.fail_closed, bool, "a boolean")
    positive(p, "Audit.CheckpointInterval", audit.checkpoint_interval, integer=True)
    if not isinstance(audit.sync, str):
        p.check("Audit.Sync", "expected a string")
    else:
        try:
            parse_sync(audit.sync)
        except ValueError as exc:
            p.check("Audit.Sync", str(exc))
    if not isinstance(audit.mirror, str):
        p.check(
            "Audit.Mirror", "expected 'stdout', 'syslog', 'syslog:PATH' or 'syslog://HOST:PORT'"
        )
    elif problem := mirror_problem(audit.mirror):
        p.check("Audit.Mirror", problem)
    if not isinstance(audit.signing_key, str):
        p.check("Audit.SigningKey", "expected a path to a key file")
    elif audit.signing_key and (problem := readable_problem(audit.signing_key)):
        p.check("Audit.SigningKey", problem)
    elif audit.signing_key and audit.signing_key_pem is None:
        try:  # a sealed file needs the Seal section (opened while the config was read)
            load_signer(audit.signing_key)
        except ConfigError as exc:
            p.check("Audit.SigningKey", str(exc).removeprefix("Audit.SigningKey: "))


def _check_word(p: Problems, path: str, value: object, words: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        p.check(path, "expected a string")
    elif value not in words:
        p.check(path, f"expected one of {', '.join(words)}, got '{clip(value)}'")


def _check_store(p: Problems, path: str, value: object, words: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        p.check(path, "expected a string")
    elif value not in words and not value.startswith(("redis://", "rediss://", "unix://")):
        allowed = ", ".join(w for w in words if w)
        p.check(path, f"expected {allowed} or a redis:// URL, got '{clip(value)}'")


def _check_cidrs(p: Problems, path: str, values: object) -> None:
    if not isinstance(values, list):
        p.check(path, "expected a list of CIDRs")
        return
    for i, value in enumerate(values):
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            p.check(f"{path}[{i}]", f"not an IP network: '{clip(str(value))}'")


POLICY_PRESETS = ("", "read-only")


def _check_policy(policy: object, path: str, p: Problems) -> None:
    if not is_type(p, path, policy, Policy, "a Policy"):
        return
    assert isinstance(policy, Policy)
    if policy.preset not in POLICY_PRESETS:
        p.check(f"{path}.Preset", f"unknown preset '{clip(str(policy.preset))}' (known: read-only)")
    for key in ("services", "actions", "deny_actions", "regions"):
        values = getattr(policy, key)
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            name = "".join(w.capitalize() for w in key.split("_"))
            p.check(f"{path}.{name}", "expected a list of non-empty strings")
    _check_cidrs(p, f"{path}.SourceCIDRs", policy.source_cidrs)


def _vendor_problem(vendor: str) -> str | None:
    known = signers.known_vendors()
    if vendor in known:
        return None
    code = vendor.strip().lower()
    if code in known:
        return f"vendor codes are lower case: use '{code}'"
    if code in KEY_PROXY_VENDORS:
        return f"vendor '{clip(vendor)}' is not supported yet"
    return f"unknown vendor '{clip(vendor)}' (known: {', '.join(known)})"


def _upstream_problem(upstream: str) -> str | None:
    try:
        url = urlsplit(upstream)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = None, False
    if url is not None and (url.username is not None or url.password is not None):
        return "must not contain user info (user:password@)"
    if url is None or url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        shown = "" if "@" in upstream else f", got '{clip(upstream, 80)}'"
        return f"expected an http(s) URL with a host{shown}"
    return None


def _check_credential(
    cred: object, path: str, p: Problems, needed: tuple[str, ...] = ("AccessKey", "SecretKey")
) -> None:
    if not is_type(p, path, cred, Credential, "a Credential"):
        return
    assert isinstance(cred, Credential)  # for mypy: is_type just said so
    if not is_type(p, f"{path}.AccessKey", cred.access_key, str, "a string"):
        pass
    elif not cred.access_key and "AccessKey" in needed:
        p.check(f"{path}.AccessKey", "must not be empty")
    if (
        is_type(p, f"{path}.SecretKey", cred.secret_key, Secret, "a Secret")
        and not cred.secret_key
        and "SecretKey" in needed
    ):
        p.check(f"{path}.SecretKey", "must not be empty")
    for key, value in (
        ("AccessToken", cred.access_token),
        ("ClientToken", cred.client_token),
        ("ClientSecret", cred.client_secret),
    ):
        if value is not None:
            is_type(p, f"{path}.{key}", value, Secret, "a Secret or None")
        if key in needed and not value:
            p.check(f"{path}.{key}", "must not be empty")


def _check_endpoint(ep: Endpoint, path: str, p: Problems) -> None:
    if not isinstance(ep.cloud_account_name, str) or not ep.cloud_account_name:
        p.check(f"{path}.CloudAccountName", "must not be empty")
    if not isinstance(ep.vendor, str) or not ep.vendor:
        p.check(f"{path}.Vendor", "must not be empty")
    elif problem := _vendor_problem(ep.vendor):
        p.check(f"{path}.Vendor", problem)
    needed = required_credential_keys(ep.vendor) if isinstance(ep.vendor, str) else ()
    _check_credential(ep.proxy, f"{path}.Credentials.Proxy", p, needed)
    _check_credential(ep.real, f"{path}.Credentials.Real", p, needed)
    for i, extra in enumerate(ep.additional_proxies):
        _check_credential(extra, f"{path}.Credentials.AdditionalProxies[{i}]", p, needed)
    for key, value in (
        ("MaxBodyBytes", ep.max_body_bytes),
        ("MaxConcurrentRequests", ep.max_concurrent_requests),
    ):
        if value is not None:
            positive(p, f"{path}.{key}", value, integer=True)
    hosts = ep.allowed_hosts
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip(".") for h in hosts):
        p.check(f"{path}.AllowedHosts", "expected a list of DNS names or suffixes")
    _check_policy(ep.policy, f"{path}.Policy", p)
    check_key_policy(ep.key_policy, f"{path}.KeyPolicy", p)
    if ep.upstream is not None and (
        not isinstance(ep.upstream, str) or (problem := _upstream_problem(ep.upstream))
    ):
        p.check(f"{path}.Upstream", problem if isinstance(ep.upstream, str) else "expected a URL")


def _proxy_credential_ids(ep: Endpoint) -> list[tuple[str, str | None]]:
    creds = [("Proxy", ep.proxy)]
    if isinstance(ep.additional_proxies, list):
        creds += [(f"AdditionalProxies[{i}]", c) for i, c in enumerate(ep.additional_proxies)]
    out: list[tuple[str, str | None]] = []
    for where, cred in creds:
        if not isinstance(cred, Credential):
            continue
        try:
            out.append((where, signers.get(ep.vendor).credential_id(cred)))
        except (KeyError, TypeError, AttributeError):
            out.append((where, cred.access_key))
    return out


def _check_endpoints(endpoints: list[Endpoint], p: Problems) -> None:
    if not is_type(p, "Endpoints", endpoints, list, "a list of Endpoint"):
        return
    names: dict[str, int] = {}
    proxy_keys: dict[str, str] = {}
    for i, ep in enumerate(endpoints):
        path = f"Endpoints[{i}]"
        if not is_type(p, path, ep, Endpoint, "an Endpoint"):
            continue
        _check_endpoint(ep, path, p)
        name = ep.cloud_account_name
        if isinstance(name, str) and name and names.setdefault(name, i) != i:
            p.check(f"{path}.CloudAccountName", f"duplicate name (also Endpoints[{names[name]}])")
        for where, key in _proxy_credential_ids(ep):
            if not isinstance(key, str) or not key:
                continue
            if key in proxy_keys:
                p.check(
                    f"{path}.Credentials.{where}.AccessKey",
                    f"duplicate proxy access key (also {proxy_keys[key]})",
                )
            else:
                proxy_keys[key] = f"{path}.Credentials.{where}"


_SECTION_TYPES = (
    ("Http", "http", HttpConfig, "an HttpConfig"),
    ("Log", "log", LogConfig, "a LogConfig"),
    ("Audit", "audit", AuditConfig, "an AuditConfig"),
    ("Forbidden", "forbidden", ForbiddenConfig, "a ForbiddenConfig"),
    ("Security", "security", SecurityConfig, "a SecurityConfig"),
)


def check_config(cfg: Config, p: Problems) -> None:
    sections_ok = all(
        [
            is_type(p, name, getattr(cfg, attr), kind, what)
            for name, attr, kind, what in _SECTION_TYPES
        ]
    )
    if sections_ok and is_type(p, "Http.Tls", cfg.http.tls, TlsConfig, "a TlsConfig"):
        _check_http(cfg.http, p)
        _check_sections(cfg, p)
    _check_endpoints(cfg.endpoints, p)
    allow_weak = sections_ok and cfg.security.allow_weak_proxy_secrets is True
    check_credential_hygiene(cfg.endpoints, allow_weak, p)
    check_key_service(cfg.key_service, p)


def validate(cfg: Config) -> None:
    """Check a ``Config`` built in Python with the rules ``load`` applies.

    Raises ``ConfigError`` listing every problem; ``TypeError`` if ``cfg`` is not a Config.
    """
    if not isinstance(cfg, Config):
        raise TypeError("validate() needs a keybroker.settings.Config")
    problems = Problems()
    check_config(cfg, problems)
    problems.raise_if_any()
