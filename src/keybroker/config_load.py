"""Read key-proxy's ``config.yml`` into a :class:`~keybroker.config.Config`, and validate it.

``load(path)`` / ``loads(text)`` accept key-proxy's file verbatim: PascalCase keys (matched
case-insensitively, as a forgiving superset of key-proxy's exact ``yaml.v2`` tags), plus our
additions.  ``validate(cfg)`` runs the same checks on a ``Config`` built in Python.

Every problem is collected first, then one :class:`~keybroker.errors.ConfigError` is raised
whose ``problems`` read like ``config.yml:12: Endpoints[2].Vendor: unknown vendor 'awz' (known:
aws, volcengine)``.  Messages name fields, never the value of a credential.

Credential fields may hold references instead of values:

* ``${NAME}`` — the environment variable ``NAME``;
* ``${file:/path}`` — the content of a file, one trailing newline removed;
* ``${prefix:rest}`` — any resolver added with :func:`register_secret_resolver`
  (``sealed`` is reserved for values sealed with keybroker's KMS);
* ``${sealed:kb1....}`` — a value made by ``keybroker seal``, opened with the KMS named in the
  top-level ``Seal`` section (``KMS: kms://...``, ``Storage: storage://...``), bound to its
  endpoint's ``CloudAccountName`` and field (see :mod:`keybroker.sealing`);
* ``$${...}`` — the literal text ``${...}`` (each extra leading ``$`` escapes one more).

The YAML is composed into nodes with PyYAML's safe loader (no tags are ever constructed into
objects), so each problem keeps its line; size, nesting depth and endpoint count are bounded.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from keybroker.config import (
    AuditConfig,
    Config,
    Endpoint,
    KeyPolicy,
    KeyServiceConfig,
)
from keybroker.config_check import (
    KEY_PROXY_VENDORS,
    LOG_LEVELS,
    Problems,
    check_config,
    clip,
    required_credential_keys,
    validate,
)
from keybroker.config_secrets import (
    SecretResolver,
    _resolvers,
    register_secret_resolver,
    resolve_secret,
    unsealing,
)
from keybroker.credentials import Credential
from keybroker.errors import ConfigError
from keybroker.secret import Secret

__all__ = [
    "KEY_PROXY_VENDORS",
    "LOG_LEVELS",
    "MAX_CONFIG_BYTES",
    "SecretResolver",
    "load",
    "loads",
    "register_secret_resolver",
    "validate",
]

#: Bounds on hostile or accidental input.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_ENDPOINTS = 10_000

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MERGE_TAG = f"{_STD}merge"
_TRUE = {"true", "yes", "y", "on"}
_FALSE = {"false", "no", "n", "off"}
_DECIMAL_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_FIELD_NAME = re.compile(r"[A-Za-z_]{1,32}")
_INT_CONSTRUCTOR = SafeConstructor()


# --- YAML nodes -> values --------------------------------------------------------------------


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Loader(yaml.SafeLoader):
    """The safe loader, with a bound on nesting (PyYAML's composer recurses per level)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event: Any = self.peek_event()  # type: ignore[no-untyped-call]
                raise _TooDeep(event.start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 0


_SCALAR_NAMES = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "nothing"}


def _kind(node: Node) -> str:
    """What a node is, never what it holds (it may be a secret in the wrong place)."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _SCALAR_NAMES.get(node.tag.removeprefix(_STD), "a string")


class _Reader:
    """Turns nodes into typed values, recording each problem with its line."""

    def __init__(self, problems: Problems) -> None:
        self.p = problems
        # Sealed values are bound to their account and field: while an endpoint is read,
        # ``endpoint`` is its (path, CloudAccountName); ``unseal`` is set by a Seal section.
        self.endpoint = ("", "")
        self.unseal: Callable[..., str] | None = None

    def resolvers_for(self, path: str) -> Mapping[str, SecretResolver]:
        """The secret resolvers for the credential field at ``path``."""
        if self.unseal is None:
            return _resolvers
        where, account = self.endpoint
        inside = path[len(where) + 1 :] if path.startswith(f"{where}.") else path
        opener = functools.partial(self.unseal, account=account, field=inside)
        return {**_resolvers, "sealed": opener}

    def mapping(self, node: Node, path: str, known: tuple[str, ...]) -> dict[str, Node] | None:
        """The ``{canonical key: value node}`` of a mapping; ``None`` if not a mapping."""
        self.p.lines.setdefault(path, _line(node))
        if self.is_null(node):
            return {}
        if not isinstance(node, MappingNode) or node.tag != f"{_STD}map":
            self.p.add(path, f"expected a mapping, got {self.describe(node)}", _line(node))
            return None
        by_lower = {k.lower(): k for k in known}
        result: dict[str, Node] = {}
        for key_node, value in self._pairs(node, path, 0):
            name = self._key(key_node, path, by_lower, result)
            if name is not None:
                result[name] = value
                self.p.lines[self.join(path, name)] = _line(value)
        return result

    def _pairs(self, node: MappingNode, path: str, depth: int) -> list[tuple[Node, Node]]:
        """The key/value pairs with YAML merge keys (``<<: *base``) applied."""
        explicit = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        merged: list[tuple[Node, Node]] = []
        for key, value in node.value:
            if key.tag != _MERGE_TAG:
                continue
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for src in sources:
                if not isinstance(src, MappingNode) or depth >= MAX_DEPTH:
                    self.p.add(path, "'<<' must merge mappings", _line(key))
                    continue
                merged.extend(self._pairs(src, path, depth + 1))
        seen = {str(k.value).lower() for k, _ in explicit if isinstance(k, ScalarNode)}
        inherited = [(k, v) for k, v in merged if str(k.value).lower() not in seen]
        return explicit + self._first_of_each(inherited)

    @staticmethod
    def _first_of_each(pairs: list[tuple[Node, Node]]) -> list[tuple[Node, Node]]:
        out: dict[str, tuple[Node, Node]] = {}
        for k, v in pairs:
            out.setdefault(str(k.value).lower(), (k, v))
        return list(out.values())

    def _key(
        self, key: Node, path: str, by_lower: dict[str, str], seen: dict[str, Node]
    ) -> str | None:
        if not isinstance(key, ScalarNode) or key.tag not in _SCALAR_TAGS:
            self.p.add(path, "keys must be plain names", _line(key))
            return None
        name = by_lower.get(str(key.value).lower())
        if name is None:
            self._unknown(key, path, by_lower)
            return None
        if name in seen:
            first = self.p.lines.get(self.join(path, name))
            self.p.add(self.join(path, name), f"duplicate key (first at line {first})", _line(key))
            return None
        return name

    def _unknown(self, key: ScalarNode, path: str, by_lower: dict[str, str]) -> None:
        text = str(key.value)
        close = difflib.get_close_matches(text.lower(), list(by_lower), n=1, cutoff=0.6)
        hint = f"did you mean {by_lower[close[0]]}?" if close else None
        known = f"known: {', '.join(by_lower.values())}"
        if "Credentials" in path and not _FIELD_NAME.fullmatch(text):
            # A mis-indented secret can land here as a key: do not echo it.
            self.p.add(path, f"unknown field (name not shown; {hint or known})", _line(key))
        else:
            self.p.add(self.join(path, clip(text)), f"unknown field ({hint or known})", _line(key))

    @staticmethod
    def join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == f"{_STD}null"

    def describe(self, node: Node) -> str:
        if node.tag not in _SCALAR_TAGS | {f"{_STD}map", f"{_STD}seq"}:
            return f"a value tagged {clip(node.tag.replace(_STD, '!!', 1))}"
        return _kind(node)

    def scalar(self, node: Node, path: str, expected: str) -> str | None:
        """The raw text of a scalar (``None`` for null or a problem).

        A problem here is always a wrong node kind or tag, so the message never quotes the
        value: safe for credential fields too."""
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            return None if self.is_null(node) else str(node.value)
        self.p.add(path, f"expected {expected}, got {self.describe(node)}", _line(node))
        return None

    def string(self, node: Node, path: str) -> str | None:
        # Like yaml.v2, any scalar reads as its source text (so 0123 stays "0123").
        return self.scalar(node, path, "a string")

    def boolean(self, node: Node, path: str) -> bool | None:
        text = self.scalar(node, path, "a boolean")
        if text is None:
            return None
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        self.p.add(path, f"expected a boolean, got '{clip(text)}'", _line(node))
        return None

    def integer(self, node: Node, path: str) -> int | None:
        text = self.scalar(node, path, "an integer")
        if text is None:
            return None
        if isinstance(node, ScalarNode) and node.tag == f"{_STD}int":
            return _INT_CONSTRUCTOR.construct_yaml_int(node)
        if node.tag == f"{_STD}str" and _DECIMAL_INT.fullmatch(text):
            return int(text)
        self.p.add(path, f"expected an integer, got '{clip(text)}'", _line(node))
        return None

    def number(self, node: Node, path: str) -> float | None:
        text = self.scalar(node, path, "a number")
        if text is None:
            return None
        value: float | None = None
        if isinstance(node, ScalarNode) and node.tag == f"{_STD}int":
            value = float(_INT_CONSTRUCTOR.construct_yaml_int(node))
        elif isinstance(node, ScalarNode) and node.tag == f"{_STD}float":
            value = _INT_CONSTRUCTOR.construct_yaml_float(node)
        elif _DECIMAL.fullmatch(text):
            value = float(text)
        if value is None or not math.isfinite(value):
            self.p.add(path, f"expected a number, got '{clip(text)}'", _line(node))
            return None
        return value

    def string_list(self, node: Node, path: str) -> list[str] | None:
        """A list of strings; a single string is read as a one-element list."""
        if isinstance(node, ScalarNode):
            text = self.string(node, path)
            return None if text is None else [text]
        if not isinstance(node, SequenceNode) or node.tag != f"{_STD}seq":
            self.p.add(path, f"expected a list of strings, got {self.describe(node)}", _line(node))
            return None
        out = []
        for i, item in enumerate(node.value):
            text = self.string(item, f"{path}[{i}]")
            if text is not None:
                out.append(text)
        return out

    def required(self, m: dict[str, Node] | None, path: str, key: str) -> Node | None:
        """The node for a required ``key`` of mapping ``m`` (``None`` if ``m`` was broken)."""
        if m is None:
            return None
        if key not in m:
            self.p.add(self.join(path, key), "required field is missing")
            return None
        return m[key]


# --- sections --------------------------------------------------------------------------------

_Read = Callable[[_Reader, Node, str], Any]
_Fields = dict[str, tuple[str, _Read]]

_TLS_FIELDS: _Fields = {
    "Enabled": ("enabled", _Reader.boolean),
    "Address": ("address", _Reader.string),
    "CertFile": ("cert_file", _Reader.string),
    "KeyFile": ("key_file", _Reader.string),
    "ClientCAFile": ("client_ca_file", _Reader.string),
}
_HTTP_FIELDS: _Fields = {
    "Address": ("address", _Reader.string),
    "MaxHeaderBytes": ("max_header_bytes", _Reader.integer),
    "MaxBodyBytes": ("max_body_bytes", _Reader.integer),
    "UpstreamConnectTimeout": ("upstream_connect_timeout", _Reader.number),
    "UpstreamReadTimeout": ("upstream_read_timeout", _Reader.number),
    "ShutdownTimeout": ("shutdown_timeout", _Reader.number),
    "ClientTimeout": ("client_timeout", _Reader.number),
    "Workers": ("workers", _Reader.integer),
}
_LOG_FIELDS: _Fields = {
    "Output": ("output", _Reader.string),
    "Level": ("level", _Reader.string),
    "MaxAge": ("max_age", _Reader.integer),
    "MaxSize": ("max_size", _Reader.integer),
}
_AUDIT_FIELDS: _Fields = {**_LOG_FIELDS, "Enabled": ("enabled", _Reader.boolean)}
del _AUDIT_FIELDS["Level"]
_FORBIDDEN_FIELDS: _Fields = {
    "ForbiddenAccountNotFound": ("forbidden_account_not_found", _Reader.boolean),
    "ForbiddenProxyCredentialErr": ("forbidden_proxy_credential_err", _Reader.boolean),
}
_SECURITY_FIELDS: _Fields = {
    "ClockSkewSeconds": ("clock_skew_seconds", _Reader.integer),
    "ReplayCache": ("replay_cache", _Reader.string),
    "RateLimitStore": ("rate_limit_store", _Reader.string),
    "AllowedClientCIDRs": ("allowed_client_cidrs", _Reader.string_list),
}
_POLICY_FIELDS: _Fields = {
    "Preset": ("preset", _Reader.string),
    "Services": ("services", _Reader.string_list),
    "Actions": ("actions", _Reader.string_list),
    "DenyActions": ("deny_actions", _Reader.string_list),
    "Regions": ("regions", _Reader.string_list),
    "SourceCIDRs": ("source_cidrs", _Reader.string_list),
}
_GRPC_FIELDS: _Fields = {
    "Enabled": ("enabled", _Reader.boolean),
    "Address": ("address", _Reader.string),
    "CertFile": ("cert_file", _Reader.string),
    "KeyFile": ("key_file", _Reader.string),
    "ClientCAFile": ("client_ca_file", _Reader.string),
}
_KEY_SERVICE_FIELDS: _Fields = {
    "Enabled": ("enabled", _Reader.boolean),
    "PathPrefix": ("path_prefix", _Reader.string),
    "KMS": ("kms", _Reader.string),
    "Storage": ("storage", _Reader.string),
    "MaxDEKSize": ("max_dek_size", _Reader.integer),
}
_KEY_POLICY_FIELDS: _Fields = {
    "Prefixes": ("prefixes", _Reader.string_list),
    "Operations": ("operations", _Reader.string_list),
}
_ENDPOINT_FIELDS: _Fields = {
    "AllowedHosts": ("allowed_hosts", _Reader.string_list),
    "MaxBodyBytes": ("max_body_bytes", _Reader.integer),
    "MaxConcurrentRequests": ("max_concurrent_requests", _Reader.integer),
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
    r: _Reader, obj: object, node: Node, path: str, fields: _Fields, sections: tuple[str, ...] = ()
) -> dict[str, Node]:
    """Set ``obj``'s attributes from a mapping; absent or null keys keep their defaults."""
    m = r.mapping(node, path, (*fields, *sections))
    for key, (attr, read) in fields.items():
        if m and key in m:
            value = read(r, m[key], r.join(path, key))
            if value is not None:
                setattr(obj, attr, value)
    return m or {}


def _build(r: _Reader, top: dict[str, Node], env: Mapping[str, str]) -> Config:
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
    return cfg


def _key_service(r: _Reader, cfg: KeyServiceConfig, node: Node) -> None:
    """``KeyService`` and its ``Grpc`` block."""
    m = _fill(r, cfg, node, "KeyService", _KEY_SERVICE_FIELDS, ("Grpc",))
    if "Grpc" in m:
        _fill(r, cfg.grpc, m["Grpc"], "KeyService.Grpc", _GRPC_FIELDS)


def _endpoints(r: _Reader, node: Node, env: Mapping[str, str]) -> list[Endpoint]:
    r.p.lines["Endpoints"] = _line(node)
    if r.is_null(node):
        return []
    if not isinstance(node, SequenceNode) or node.tag != f"{_STD}seq":
        r.p.add("Endpoints", f"expected a list, got {r.describe(node)}", _line(node))
        return []
    if len(node.value) > MAX_ENDPOINTS:
        r.p.add("Endpoints", f"more than {MAX_ENDPOINTS} endpoints", _line(node))
        return []
    return [_endpoint(r, item, f"Endpoints[{i}]", env) for i, item in enumerate(node.value)]


def _endpoint(r: _Reader, node: Node, path: str, env: Mapping[str, str]) -> Endpoint:
    """One endpoint; broken parts become placeholders whose paths are already reported."""
    if r.is_null(node):
        r.p.add(path, "empty entry (expected CloudAccountName, Vendor, Credentials)", _line(node))
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
    r: _Reader,
    creds: dict[str, Node] | None,
    path: str,
    env: Mapping[str, str],
    needed: tuple[str, ...],
) -> list[Credential]:
    node = (creds or {}).get("AdditionalProxies")
    if node is None or r.is_null(node):
        return []
    sub = f"{path}.AdditionalProxies"
    if not isinstance(node, SequenceNode) or node.tag != f"{_STD}seq":
        r.p.add(sub, f"expected a list of credentials, got {r.describe(node)}", _line(node))
        return []
    wrapped = {f"[{i}]": item for i, item in enumerate(node.value)}
    return [_credential(r, wrapped, sub, key, env, needed) for key in wrapped]


def _required_text(r: _Reader, m: dict[str, Node] | None, path: str, key: str) -> str:
    node = r.required(m, path, key)
    if node is None:
        return ""
    sub = r.join(path, key)
    text = r.string(node, sub)
    if not text and sub not in r.p.failed:
        r.p.add(sub, "must not be empty", _line(node))
    return text or ""


def _credential(
    r: _Reader,
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


def _expires_at(r: _Reader, node: Node, path: str) -> datetime | None:
    """An RFC 3339 time (``2027-01-31T00:00:00Z``); a time without a zone is UTC."""
    if isinstance(node, ScalarNode) and node.tag == f"{_STD}timestamp":
        value = _INT_CONSTRUCTOR.construct_yaml_timestamp(node)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = r.string(node, path)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        r.p.add(path, f"expected an RFC 3339 time, got '{clip(text)}'", _line(node))
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _secret_field(
    r: _Reader,
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
            value = resolve_secret(raw, env, r.resolvers_for(sub))
        except ConfigError as exc:
            for message in exc.problems:
                r.p.add(sub, message, _line(node))
            return None
    if not value and required and sub not in r.p.failed:
        r.p.add(sub, "must not be empty", _line(node))
    return value or None


def _normalise(cfg: Config) -> None:
    """key-proxy's defaults for values it treats as "unset"."""
    cfg.log.level = cfg.log.level.strip().lower() or "info"
    cfg.log.max_age = cfg.log.max_age if cfg.log.max_age > 0 else 14
    cfg.log.max_size = cfg.log.max_size if cfg.log.max_size > 0 else 100
    cfg.audit.max_age = cfg.audit.max_age if cfg.audit.max_age > 0 else AuditConfig.max_age
    cfg.audit.max_size = cfg.audit.max_size if cfg.audit.max_size > 0 else AuditConfig.max_size


# --- entry points ----------------------------------------------------------------------------


def _compose(text: str, source: str) -> Node | None:
    """The YAML node tree.  Raises ``ConfigError`` for invalid or too deeply nested YAML."""
    try:
        return yaml.compose(text, Loader=_Loader)
    except _TooDeep as exc:
        raise ConfigError(f"{source}:{exc.line}: nested deeper than {MAX_DEPTH} levels") from None
    except yaml.MarkedYAMLError as exc:
        # Our own message: str(exc) quotes source lines, which may hold secrets.
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        what = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise ConfigError(f"{source}:{line}: invalid YAML: {what}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, int(exc.position)) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        raise ConfigError(f"{source}:{line}: character U+{code:04X} is not allowed") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({type(exc).__name__})") from None


def loads(text: str, source: str = "<string>", *, env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate a config from YAML text; ``source`` names it in messages.

    ``env`` replaces ``os.environ`` for ``${NAME}`` references.
    Raises ``ConfigError`` listing every problem; ``TypeError`` if ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError("loads() needs the YAML as a str")
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    root = _compose(text, source)
    if root is None:
        raise ConfigError(f"{source}: the file is empty (expected Http, Log, Endpoints, ...)")
    problems = Problems(source=source)
    reader = _Reader(problems)
    if not isinstance(root, MappingNode):
        got = reader.describe(root)
        raise ConfigError(f"{source}:{_line(root)}: expected a mapping of sections, got {got}")
    top = reader.mapping(root, "", _TOP_KEYS) or {}
    cfg = _build(reader, top, os.environ if env is None else env)
    _normalise(cfg)
    check_config(cfg, problems)
    problems.raise_if_any()
    return cfg


def load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the config file at ``path`` (key-proxy's ``-conf-file``).

    Raises ``ConfigError`` (unreadable, not UTF-8, too large, or any problem ``loads`` finds).
    """
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text") from None
    return loads(text.removeprefix("\ufeff"), source, env=env)
