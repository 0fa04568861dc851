"""Build the :class:`~keybroker.settings.Config` dataclasses from a YAML document's nodes.

Each section has a table of its keys (key-proxy's PascalCase names) with the attribute to set
and the :class:`~keybroker.config.yamlform.Reader` method that reads it; endpoints and their
credentials are built with secret references resolved (``${sealed:...}`` bound to the
endpoint's ``CloudAccountName`` and field).  Broken parts become placeholders whose problems
are already recorded; :mod:`keybroker.config.check` runs the checks afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from keybroker.audit.keys import SEAL_ACCOUNT, SEAL_FIELD, SEALED_PREFIX, read_private_key
from keybroker.config.check import required_credential_keys
from keybroker.config.problems import clip
from keybroker.config.secrets import resolve_secret, resolvers_for, unsealing
from keybroker.config.yamlform import SAFE_CONSTRUCTOR, STD_TAG, Reader, node_line
from keybroker.credentials import Credential
from keybroker.errors import ConfigError
from keybroker.secret import Secret
from keybroker.settings import (
    AuditConfig,
    Config,
    Endpoint,
    GrpcClient,
    KeyPolicy,
    KeyServiceConfig,
)

__all__ = ["MAX_ENDPOINTS", "build_config"]

#: Bound on hostile or accidental input (endpoints, and gRPC clients).
MAX_ENDPOINTS = 10_000


# --- sections --------------------------------------------------------------------------------

_Read = Callable[[Reader, Node, str], Any]
_Fields = dict[str, tuple[str, _Read]]

_TLS_FIELDS: _Fields = {
    "Enabled": ("enabled", Reader.boolean),
    "Address": ("address", Reader.string),
    "CertFile": ("cert_file", Reader.string),
    "KeyFile": ("key_file", Reader.string),
    "ClientCAFile": ("client_ca_file", Reader.string),
}
_HTTP_FIELDS: _Fields = {
    "Address": ("address", Reader.string),
    "MaxHeaderBytes": ("max_header_bytes", Reader.integer),
    "MaxBodyBytes": ("max_body_bytes", Reader.integer),
    "UpstreamConnectTimeout": ("upstream_connect_timeout", Reader.number),
    "UpstreamReadTimeout": ("upstream_read_timeout", Reader.number),
    "ShutdownTimeout": ("shutdown_timeout", Reader.number),
    "ClientTimeout": ("client_timeout", Reader.number),
    "Workers": ("workers", Reader.integer),
    "MaxConnections": ("max_connections", Reader.integer),
    "MaxConnectionsPerClient": ("max_connections_per_client", Reader.integer),
}
_LOG_FIELDS: _Fields = {
    "Output": ("output", Reader.string),
    "Level": ("level", Reader.string),
    "MaxAge": ("max_age", Reader.integer),
    "MaxSize": ("max_size", Reader.integer),
}
_AUDIT_FIELDS: _Fields = {
    **_LOG_FIELDS,
    "Enabled": ("enabled", Reader.boolean),
    "Sync": ("sync", Reader.string),
    "FailClosed": ("fail_closed", Reader.boolean),
    "SigningKey": ("signing_key", Reader.string),
    "CheckpointInterval": ("checkpoint_interval", Reader.integer),
    "Mirror": ("mirror", Reader.string),
}
del _AUDIT_FIELDS["Level"]
_FORBIDDEN_FIELDS: _Fields = {
    "ForbiddenAccountNotFound": ("forbidden_account_not_found", Reader.boolean),
    "ForbiddenProxyCredentialErr": ("forbidden_proxy_credential_err", Reader.boolean),
}
_SECURITY_FIELDS: _Fields = {
    "ClockSkewSeconds": ("clock_skew_seconds", Reader.integer),
    "ReplayCache": ("replay_cache", Reader.string),
    "ReplayProtection": ("replay_protection", Reader.string),
    "RateLimitStore": ("rate_limit_store", Reader.string),
    "AllowedClientCIDRs": ("allowed_client_cidrs", Reader.string_list),
    "MetricsClientCIDRs": ("metrics_client_cidrs", Reader.string_list),
    "AllowWeakProxySecrets": ("allow_weak_proxy_secrets", Reader.boolean),
}
_POLICY_FIELDS: _Fields = {
    "Preset": ("preset", Reader.string),
    "Services": ("services", Reader.string_list),
    "Actions": ("actions", Reader.string_list),
    "DenyActions": ("deny_actions", Reader.string_list),
    "Regions": ("regions", Reader.string_list),
    "SourceCIDRs": ("source_cidrs", Reader.string_list),
}
_GRPC_FIELDS: _Fields = {
    "Enabled": ("enabled", Reader.boolean),
    "Address": ("address", Reader.string),
    "CertFile": ("cert_file", Reader.string),
    "KeyFile": ("key_file", Reader.string),
    "ClientCAFile": ("client_ca_file", Reader.string),
}
_KEY_SERVICE_FIELDS: _Fields = {
    "Enabled": ("enabled", Reader.boolean),
    "PathPrefix": ("path_prefix", Reader.string),
    "KMS": ("kms", Reader.string),
    "Storage": ("storage", Reader.string),
    "MaxDEKSize": ("max_dek_size", Reader.integer),
    "LegacyBlobs": ("legacy_blobs", Reader.string),
    "TrustedStore": ("trusted_store", Reader.boolean),
}
_KEY_POLICY_FIELDS: _Fields = {
    "Prefixes": ("prefixes", Reader.string_list),
    "Operations": ("operations", Reader.string_list),
}
_ENDPOINT_FIELDS: _Fields = {
    "AllowedHosts": ("allowed_hosts", Reader.string_list),
    "MaxBodyBytes": ("max_body_bytes", Reader.integer),
    "MaxConcurrentRequests": ("max_concurrent_requests", Reader.integer),
}

_TOP_KEYS = ("Http", "Log", "Audit", "Forbidden", "Security", "Seal", "KeyService", "Endpoints")
_ENDPOINT_KEYS = (
    "CloudAccountName",
    "Vendor",
    "Credentials",
    "Upstream",
    "Policy",
    "KeyPolicy",
    *_ENDPOINT_FIELDS,
)
_CREDENTIAL_KEYS = ("AccessKey", "SecretKey", "AccessToken", "ClientToken", "ClientSecret")
_CREDENTIAL_EXTRA = ("ExpiresAt",)


def _fill(
    r: Reader, obj: object, node: Node, path: str, fields: _Fields, sections: tuple[str, ...] = ()
) -> dict[str, Node]:
    """Set ``obj``'s attributes from a mapping; absent or null keys keep their defaults."""
    m = r.mapping(node, path, (*fields, *sections))
    for key, (attr, read) in fields.items():
        if m and key in m:
            value = read(r, m[key], r.join(path, key))
            if value is not None:
                setattr(obj, attr, value)
    return m or {}


def build_config(r: Reader, root: MappingNode, env: Mapping[str, str]) -> Config:
    """The ``Config`` of a document's top-level mapping, with key-proxy's defaults applied;
    every problem is recorded in ``r.p`` (the checks run afterwards)."""
    top = r.mapping(root, "", _TOP_KEYS) or {}
    cfg = _build(r, top, env)
    _normalise(cfg)
    return cfg


def _build(r: Reader, top: dict[str, Node], env: Mapping[str, str]) -> Config:
    cfg = Config()
    http = _fill(r, cfg.http, top["Http"], "Http", _HTTP_FIELDS, ("Tls",)) if "Http" in top else {}
    if "Tls" in http:
        _fill(r, cfg.http.tls, http["Tls"], "Http.Tls", _TLS_FIELDS)
    sections: list[tuple[str, object, _Fields]] = [
        ("Log", cfg.log, _LOG_FIELDS),
        ("Audit", cfg.audit, _AUDIT_FIELDS),
        ("Forbidden", cfg.forbidden, _FORBIDDEN_FIELDS),
        ("Security", cfg.security, _SECURITY_FIELDS),
    ]
    for name, obj, fields in sections:
        if name in top:
            _fill(r, obj, top[name], name, fields)
    if "KeyService" in top:
        _key_service(r, cfg.key_service, top["KeyService"])
    with unsealing(r, top.get("Seal")):
        if "Endpoints" in top:
            cfg.endpoints = _endpoints(r, top["Endpoints"], env)
        _unseal_audit_key(r, cfg.audit)
    return cfg


def _unseal_audit_key(r: Reader, audit: AuditConfig) -> None:
    """``Audit.SigningKey`` naming a sealed key file: opened now, with the Seal section."""
    if not isinstance(audit.signing_key, str) or not audit.signing_key or r.unseal is None:
        return
    try:
        text = read_private_key(audit.signing_key)
    except ConfigError:
        return  # the checks report an unreadable file
    if not (text.startswith(SEALED_PREFIX) and text.endswith("}")):
        return
    try:
        pem = r.unseal(text[len(SEALED_PREFIX) : -1], account=SEAL_ACCOUNT, field=SEAL_FIELD)
    except ConfigError as exc:
        r.p.add("Audit.SigningKey", str(exc))
        return
    audit.signing_key_pem = Secret(pem)


def _key_service(r: Reader, cfg: KeyServiceConfig, node: Node) -> None:
    """``KeyService`` and its ``Grpc`` block with its ``Clients``."""
    m = _fill(r, cfg, node, "KeyService", _KEY_SERVICE_FIELDS, ("Grpc",))
    if "Grpc" in m:
        path = "KeyService.Grpc"
        grpc = _fill(r, cfg.grpc, m["Grpc"], path, _GRPC_FIELDS, ("Clients",))
        if "Clients" in grpc and not r.is_null(grpc["Clients"]):
            cfg.grpc.clients = _grpc_clients(r, grpc["Clients"], f"{path}.Clients")


def _grpc_clients(r: Reader, node: Node, path: str) -> list[GrpcClient]:
    """``KeyService.Grpc.Clients``: each ``{CommonName, KeyPolicy}``, the policy read as an
    endpoint's; broken entries become placeholders whose problems are already recorded."""
    if not isinstance(node, SequenceNode) or node.tag != f"{STD_TAG}seq":
        r.p.add(path, f"expected a list, got {r.describe(node)}", node_line(node))
        return []
    if len(node.value) > MAX_ENDPOINTS:
        r.p.add(path, f"more than {MAX_ENDPOINTS} clients", node_line(node))
        return []
    return [_grpc_client(r, item, f"{path}[{i}]") for i, item in enumerate(node.value)]


def _grpc_client(r: Reader, node: Node, path: str) -> GrpcClient:
    if r.is_null(node):
        r.p.add(path, "empty entry (expected CommonName, KeyPolicy)", node_line(node))
    m = None if r.is_null(node) else r.mapping(node, path, ("CommonName", "KeyPolicy"))
    client = GrpcClient(_required_text(r, m, path, "CommonName"), KeyPolicy())
    policy = r.required(m, path, "KeyPolicy")
    if policy is not None:
        _fill(r, client.key_policy, policy, f"{path}.KeyPolicy", _KEY_POLICY_FIELDS)
    return client


def _endpoints(r: Reader, node: Node, env: Mapping[str, str]) -> list[Endpoint]:
    r.p.lines["Endpoints"] = node_line(node)
    if r.is_null(node):
        return []
    if not isinstance(node, SequenceNode) or node.tag != f"{STD_TAG}seq":
        r.p.add("Endpoints", f"expected a list, got {r.describe(node)}", node_line(node))
        return []
    if len(node.value) > MAX_ENDPOINTS:
        r.p.add("Endpoints", f"more than {MAX_ENDPOINTS} endpoints", node_line(node))
        return []
    return [_endpoint(r, item, f"Endpoints[{i}]", env) for i, item in enumerate(node.value)]


def _endpoint(r: Reader, node: Node, path: str, env: Mapping[str, str]) -> Endpoint:
    """One endpoint; broken parts become placeholders whose paths are already reported."""
    if r.is_null(node):
        r.p.add(
            path, "empty entry (expected CloudAccountName, Vendor, Credentials)", node_line(node)
        )
    m = None if r.is_null(node) else r.mapping(node, path, _ENDPOINT_KEYS)
    name = _required_text(r, m, path, "CloudAccountName")
    r.endpoint = (path, name)
    vendor = _required_text(r, m, path, "Vendor")
    upstream = r.string(m["Upstream"], f"{path}.Upstream") if m and "Upstream" in m else None
    creds_path = f"{path}.Credentials"
    creds_node = r.required(m, path, "Credentials")
    creds = (
        r.mapping(creds_node, creds_path, ("Proxy", "Real", "AdditionalProxies"))
        if creds_node is not None
        else None
    )
    needed = required_credential_keys(vendor.strip().lower())
    proxy = _credential(r, creds, creds_path, "Proxy", env, needed)
    real = _credential(r, creds, creds_path, "Real", env, needed)
    endpoint = Endpoint(name, vendor.strip().lower(), proxy, real, upstream or None)
    endpoint.additional_proxies = _additional_proxies(r, creds, creds_path, env, needed)
    for key, (attr, read) in _ENDPOINT_FIELDS.items():
        if m and key in m and (value := read(r, m[key], r.join(path, key))) is not None:
            setattr(endpoint, attr, value)
    if m and "Policy" in m and not r.is_null(m["Policy"]):
        _fill(r, endpoint.policy, m["Policy"], f"{path}.Policy", _POLICY_FIELDS)
    if m and "KeyPolicy" in m and not r.is_null(m["KeyPolicy"]):
        endpoint.key_policy = KeyPolicy()
        _fill(r, endpoint.key_policy, m["KeyPolicy"], f"{path}.KeyPolicy", _KEY_POLICY_FIELDS)
    return endpoint


def _additional_proxies(
    r: Reader,
    creds: dict[str, Node] | None,
    path: str,
    env: Mapping[str, str],
    needed: tuple[str, ...],
) -> list[Credential]:
    node = (creds or {}).get("AdditionalProxies")
    if node is None or r.is_null(node):
        return []
    sub = f"{path}.AdditionalProxies"
    if not isinstance(node, SequenceNode) or node.tag != f"{STD_TAG}seq":
        r.p.add(sub, f"expected a list of credentials, got {r.describe(node)}", node_line(node))
        return []
    wrapped = {f"[{i}]": item for i, item in enumerate(node.value)}
    return [_credential(r, wrapped, sub, key, env, needed) for key in wrapped]


def _required_text(r: Reader, m: dict[str, Node] | None, path: str, key: str) -> str:
    node = r.required(m, path, key)
    if node is None:
        return ""
    sub = r.join(path, key)
    text = r.string(node, sub)
    if not text and sub not in r.p.failed:
        r.p.add(sub, "must not be empty", node_line(node))
    return text or ""


def _credential(
    r: Reader,
    creds: dict[str, Node] | None,
    path: str,
    role: str,
    env: Mapping[str, str],
    needed: tuple[str, ...] = ("AccessKey", "SecretKey"),
) -> Credential:
    sub = f"{path}{role}" if role.startswith("[") else f"{path}.{role}"
    node = r.required(creds, path, role)
    m = r.mapping(node, sub, (*_CREDENTIAL_KEYS, *_CREDENTIAL_EXTRA)) if node is not None else None
    access, secret, token, client_token, client_secret = (
        _secret_field(r, m, sub, key, env, required=key in needed) for key in _CREDENTIAL_KEYS
    )
    expires = _expires_at(r, m["ExpiresAt"], f"{sub}.ExpiresAt") if m and "ExpiresAt" in m else None
    return Credential(
        access or "",
        Secret(secret or ""),
        access_token=Secret(token) if token else None,
        client_token=Secret(client_token) if client_token else None,
        client_secret=Secret(client_secret) if client_secret else None,
        expires_at=expires,
    )


def _expires_at(r: Reader, node: Node, path: str) -> datetime | None:
    """An RFC 3339 time (``2027-01-31T00:00:00Z``); a time without a zone is UTC."""
    if isinstance(node, ScalarNode) and node.tag == f"{STD_TAG}timestamp":
        value = SAFE_CONSTRUCTOR.construct_yaml_timestamp(node)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = r.string(node, path)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        r.p.add(path, f"expected an RFC 3339 time, got '{clip(text)}'", node_line(node))
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _secret_field(
    r: Reader,
    m: dict[str, Node] | None,
    path: str,
    key: str,
    env: Mapping[str, str],
    *,
    required: bool,
) -> str | None:
    """A credential value with references resolved; ``None`` when absent or broken."""
    node = r.required(m, path, key) if required else (m or {}).get(key)
    if node is None:
        return None
    sub = r.join(path, key)
    raw = r.string(node, sub)
    value = None
    if raw:
        try:
            value = resolve_secret(raw, env, resolvers_for(r, sub))
        except ConfigError as exc:
            for message in exc.problems:
                r.p.add(sub, message, node_line(node))
            return None
    if not value and required and sub not in r.p.failed:
        r.p.add(sub, "must not be empty", node_line(node))
    return value or None


def _normalise(cfg: Config) -> None:
    """key-proxy's defaults for values it treats as "unset"."""
    cfg.log.level = cfg.log.level.strip().lower() or "info"
    cfg.log.max_age = cfg.log.max_age if cfg.log.max_age > 0 else 14
    cfg.log.max_size = cfg.log.max_size if cfg.log.max_size > 0 else 100
    cfg.audit.max_age = cfg.audit.max_age if cfg.audit.max_age > 0 else AuditConfig.max_age
    cfg.audit.max_size = cfg.audit.max_size if cfg.audit.max_size > 0 else AuditConfig.max_size
