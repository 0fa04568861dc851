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

import contextlib
import difflib
import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from keybroker import signers
from keybroker.config import (
    KEY_OPERATIONS,
    AuditConfig,
    Config,
    Endpoint,
    ForbiddenConfig,
    GrpcConfig,
    HttpConfig,
    KeyPolicy,
    KeyServiceConfig,
    LogConfig,
    Policy,
    SecurityConfig,
    TlsConfig,
)
from keybroker.credentials import Credential
from keybroker.errors import ConfigError, KMSError
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
MAX_SECRET_FILE_BYTES = 64 * 1024
MAX_PROBLEMS = 100

LOG_LEVELS = ("debug", "info", "warn", "warning", "error")

#: Every vendor code key-proxy knows; the ones without a registered signer are "not supported
#: yet" rather than "unknown".
KEY_PROXY_VENDORS = (
    "aws",
    "volcengine",
    "ksyun",
    "aliyun",
    "tencent",
    "huawei",
    "baidu",
    "jingdong",
    "akamai",
    "qiniu",
    "ucloud",
    "wangsu",
    "baishan",
)

#: A secret resolver gets the text after ``prefix:`` and returns the secret; it raises
#: ``ConfigError`` with a message that names no secret when it cannot.
SecretResolver = Callable[[str], str]

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MERGE_TAG = f"{_STD}merge"
_TRUE = {"true", "yes", "y", "on"}
_FALSE = {"false", "no", "n", "off"}
_DECIMAL_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PREFIX_REF = re.compile(r"\$\{([a-z][a-z0-9_-]*):(.*)\}", re.DOTALL)
# "$${" is a literal "${"; "$$${" a literal "$${", and so on: one "$" is removed.
_ESCAPED_REF = re.compile(r"\$\$+\{")
_FIELD_NAME = re.compile(r"[A-Za-z_]{1,32}")
_PREFIX_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_INT_CONSTRUCTOR = SafeConstructor()


# --- secret references -----------------------------------------------------------------------


def _read_secret_file(ref: str) -> str:
    """``${file:PATH}``: the file's text minus one trailing newline.  Raises ``ConfigError``."""
    path = os.path.expanduser(ref)
    if not path:
        raise ConfigError("${file:...} needs a path")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read secret file '{path}': {exc.strerror}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"secret file '{path}' is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"secret file '{path}' is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"secret file '{path}' is empty")
    return text


def _sealed_without_kms(ref: str) -> str:
    """``${sealed:...}`` until a KMS registers a real resolver.  Raises ``ConfigError``."""
    raise ConfigError("sealed values need a KMS (not configured)")


_resolvers: dict[str, SecretResolver] = {"file": _read_secret_file, "sealed": _sealed_without_kms}


def register_secret_resolver(prefix: str, fn: SecretResolver) -> None:
    """Make ``${prefix:rest}`` resolve to ``fn(rest)``; replaces an earlier resolver.

    Raises ``ValueError`` if ``prefix`` is not lower-case letters, digits, ``-`` or ``_``.
    """
    if not _PREFIX_NAME.fullmatch(prefix):
        raise ValueError("secret resolver prefix must match [a-z][a-z0-9_-]*")
    if not callable(fn):
        raise TypeError("secret resolver must be callable")
    _resolvers[prefix] = fn


def _resolve_secret(
    raw: str, env: Mapping[str, str], resolvers: Mapping[str, SecretResolver] | None = None
) -> str:
    """Expand one credential value (``resolvers`` replaces the registered ones).

    Raises ``ConfigError`` (message without the value)."""
    resolvers = _resolvers if resolvers is None else resolvers
    if _ESCAPED_REF.match(raw):
        return raw[1:]
    if not raw.startswith("${"):
        return raw
    if m := _ENV_REF.fullmatch(raw):
        name = m.group(1)
        value = env.get(name)
        if value is None:
            raise ConfigError(f"environment variable {name} is not set")
        if not value:
            raise ConfigError(f"environment variable {name} is empty")
        return value
    if m := _PREFIX_REF.fullmatch(raw):
        prefix, rest = m.group(1), m.group(2)
        resolver = resolvers.get(prefix)
        if resolver is None:
            known = ", ".join(sorted(resolvers))
            raise ConfigError(f"unknown secret reference '${{{prefix}:...}}' (known: {known})")
        return _call_resolver(prefix, resolver, rest)
    raise ConfigError(
        "not a valid secret reference (use ${NAME} or ${prefix:...}; "
        "write $${ for a literal value starting with ${)"
    )


def _call_resolver(prefix: str, resolver: SecretResolver, rest: str) -> str:
    """Run a plug-in resolver; anything it raises becomes a ``ConfigError`` without details
    unless it is already ours (our messages never carry secrets; others' might)."""
    try:
        value = resolver(rest)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"the '{prefix}' resolver failed ({type(exc).__name__})") from None
    if not isinstance(value, str):
        raise ConfigError(f"the '{prefix}' resolver did not return a string")
    return value


# --- problem collection ----------------------------------------------------------------------


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _clip(text: str, limit: int = 40) -> str:
    """A non-secret value fit for a message: one line, bounded length."""
    flat = "".join(c if c.isprintable() else "?" for c in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class _Problems:
    """Problems in the order found; each with the line of the YAML node it is about."""

    source: str | None = None
    lines: dict[str, int] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    found: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, path: str, message: str, line: int | None = None) -> None:
        """Record a problem with ``path``; later checks of the same path are skipped."""
        self.failed.add(path)
        if line is None:
            line = self._line_of(path)
        where = (
            "" if self.source is None else f"{self.source}:{line}: " if line else f"{self.source}: "
        )
        label = f"{path}: " if path else ""
        self.found.append((line or 1 << 30, len(self.found), f"{where}{label}{message}"))

    def check(self, path: str, message: str) -> None:
        """A later problem: dropped if one was already found at ``path`` or a parent."""
        probe = path
        while probe:
            if probe in self.failed:
                return
            probe = _parent(probe)
        self.add(path, message)

    def _line_of(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = _parent(path)
        return self.lines.get("")

    def raise_if_any(self) -> None:
        """Raises ``ConfigError`` with every problem, ordered by line."""
        if not self.found:
            return
        texts = [text for _, _, text in sorted(self.found)]
        if len(texts) > MAX_PROBLEMS:
            extra = len(texts) - MAX_PROBLEMS
            texts = [*texts[:MAX_PROBLEMS], f"... and {extra} more problems"]
        raise ConfigError(texts)


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

    def __init__(self, problems: _Problems) -> None:
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
            self.p.add(self.join(path, _clip(text)), f"unknown field ({hint or known})", _line(key))

    @staticmethod
    def join(path: str, name: str) -> str:
        return f"{path}.{name}" if path else name

    @staticmethod
    def is_null(node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == f"{_STD}null"

    def describe(self, node: Node) -> str:
        if node.tag not in _SCALAR_TAGS | {f"{_STD}map", f"{_STD}seq"}:
            return f"a value tagged {_clip(node.tag.replace(_STD, '!!', 1))}"
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
        self.p.add(path, f"expected a boolean, got '{_clip(text)}'", _line(node))
        return None

    def integer(self, node: Node, path: str) -> int | None:
        text = self.scalar(node, path, "an integer")
        if text is None:
            return None
        if isinstance(node, ScalarNode) and node.tag == f"{_STD}int":
            return _INT_CONSTRUCTOR.construct_yaml_int(node)
        if node.tag == f"{_STD}str" and _DECIMAL_INT.fullmatch(text):
            return int(text)
        self.p.add(path, f"expected an integer, got '{_clip(text)}'", _line(node))
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
            self.p.add(path, f"expected a number, got '{_clip(text)}'", _line(node))
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
_SEAL_KEYS = ("KMS", "Storage")
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
    with _sealing(r, top.get("Seal")):
        if "Endpoints" in top:
            cfg.endpoints = _endpoints(r, top["Endpoints"], env)
    return cfg


def _seal_uris(r: _Reader, node: Node) -> tuple[str, str | None] | None:
    """``Seal: {KMS: kms://..., Storage: storage://...}``; ``None`` if absent or broken."""
    m = r.mapping(node, "Seal", _SEAL_KEYS)
    if m is None:
        return None
    kms = r.string(m["KMS"], "Seal.KMS") if "KMS" in m else None
    storage = r.string(m["Storage"], "Seal.Storage") if "Storage" in m else None
    if not kms:
        if "Seal.KMS" not in r.p.failed:
            r.p.add("Seal.KMS", "required field is missing (a kms:// URI)")
        return None
    return kms, storage or None


@contextlib.contextmanager
def _sealing(r: _Reader, node: Node | None) -> Iterator[None]:
    """While the endpoints are read, open ``${sealed:...}`` values with the Seal section's KMS
    (built here, closed after)."""
    uris = _seal_uris(r, node) if node is not None and not r.is_null(node) else None
    if uris is None:
        if node is not None and not r.is_null(node):
            r.unseal = _broken_seal_section
        yield
        return
    from keybroker.sealing import Sealer  # only configs with a Seal section need the KMS

    try:
        sealer = Sealer.from_uris(*uris)
    except KMSError as exc:  # our KMS messages name parameters, never their values
        r.p.add("Seal.KMS", str(exc))
        r.unseal = _broken_seal_section
        yield
        return
    r.unseal = sealer.open
    try:
        yield
    finally:
        r.unseal = None
        sealer.close()


def _broken_seal_section(token: str, **_: str) -> str:
    raise ConfigError("sealed value cannot be opened: the Seal section is invalid")


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
    needed = _required_credential_keys(vendor.strip().lower())
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


_FIELD_KEYS = {
    "access_key": "AccessKey",
    "secret_key": "SecretKey",
    "access_token": "AccessToken",
    "client_token": "ClientToken",
    "client_secret": "ClientSecret",
}


def _required_credential_keys(vendor: str) -> tuple[str, ...]:
    """The credential keys ``vendor``'s scheme needs (AccessKey + SecretKey unless it says)."""
    try:
        signer = signers.get(vendor)
    except KeyError:
        return ("AccessKey", "SecretKey")
    return tuple(_FIELD_KEYS[f] for f in signers.credential_fields(signer))


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
        r.p.add(path, f"expected an RFC 3339 time, got '{_clip(text)}'", _line(node))
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
            value = _resolve_secret(raw, env, r.resolvers_for(sub))
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


# --- checks shared by YAML and Python configs ------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
_HOST = re.compile(r"[A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\]")


def _address_problem(address: object) -> str | None:
    if not isinstance(address, str):
        return "expected a string"
    host, sep, port = address.rpartition(":")
    if sep and _PORT.fullmatch(port) and 1 <= int(port) <= 65535 and _HOST.fullmatch(host):
        return None
    return f"expected 'host:port' or ':port' with a port 1-65535, got '{_clip(address)}'"


def _positive(p: _Problems, path: str, value: object, *, integer: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        p.check(path, "expected an integer" if integer else "expected a number")
    elif not math.isfinite(value) or value <= 0:
        p.check(path, "must be greater than 0")


def _is_type(p: _Problems, path: str, value: object, kind: type, what: str) -> bool:
    if isinstance(value, kind):
        return True
    p.check(path, f"expected {what}")
    return False


def _readable_problem(path: str) -> str | None:
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read '{_clip(path, 200)}': {exc.strerror}"


def _check_http(http: HttpConfig, p: _Problems) -> None:
    for key, (attr, read) in _HTTP_FIELDS.items():
        if key not in ("Address", "Workers"):
            _positive(p, f"Http.{key}", getattr(http, attr), integer=read is _Reader.integer)
    if isinstance(http.workers, bool) or not isinstance(http.workers, int) or http.workers < 0:
        p.check("Http.Workers", "expected an integer >= 0 (0: one worker per core)")
    for path, address in (("Http.Address", http.address), ("Http.Tls.Address", http.tls.address)):
        if problem := _address_problem(address):
            p.check(path, problem)
    tls = http.tls
    if not _is_type(p, "Http.Tls.Enabled", tls.enabled, bool, "a boolean") or not tls.enabled:
        return
    for key, value in (("CertFile", tls.cert_file), ("KeyFile", tls.key_file)):
        if not value or not isinstance(value, str):
            p.check(f"Http.Tls.{key}", "required when Http.Tls.Enabled is true")
        elif problem := _readable_problem(value):
            p.check(f"Http.Tls.{key}", problem)


def _check_sections(cfg: Config, p: _Problems) -> None:
    level = cfg.log.level
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        shown = _clip(level) if isinstance(level, str) else type(level).__name__
        p.check("Log.Level", f"expected one of {', '.join(LOG_LEVELS)}, got '{shown}'")
    for section, obj in (("Log", cfg.log), ("Audit", cfg.audit)):
        _is_type(p, f"{section}.Output", obj.output, str, "a string")
        # <= 0 is allowed: key-proxy reads it as "use the default".
        _is_type(p, f"{section}.MaxAge", obj.max_age, int, "an integer")
        _is_type(p, f"{section}.MaxSize", obj.max_size, int, "an integer")
    _is_type(p, "Audit.Enabled", cfg.audit.enabled, bool, "a boolean")
    for key, (attr, _) in _FORBIDDEN_FIELDS.items():
        _is_type(p, f"Forbidden.{key}", getattr(cfg.forbidden, attr), bool, "a boolean")
    _positive(p, "Security.ClockSkewSeconds", cfg.security.clock_skew_seconds, integer=True)
    _check_store(p, "Security.ReplayCache", cfg.security.replay_cache, ("memory", "off"))
    _check_store(p, "Security.RateLimitStore", cfg.security.rate_limit_store, ("", "memory"))
    _check_cidrs(p, "Security.AllowedClientCIDRs", cfg.security.allowed_client_cidrs)


def _check_store(p: _Problems, path: str, value: object, words: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        p.check(path, "expected a string")
    elif value not in words and not value.startswith(("redis://", "rediss://", "unix://")):
        allowed = ", ".join(w for w in words if w)
        p.check(path, f"expected {allowed} or a redis:// URL, got '{_clip(value)}'")


def _check_cidrs(p: _Problems, path: str, values: object) -> None:
    if not isinstance(values, list):
        p.check(path, "expected a list of CIDRs")
        return
    for i, value in enumerate(values):
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            p.check(f"{path}[{i}]", f"not an IP network: '{_clip(str(value))}'")


POLICY_PRESETS = ("", "read-only")


def _check_policy(policy: object, path: str, p: _Problems) -> None:
    if not _is_type(p, path, policy, Policy, "a Policy"):
        return
    assert isinstance(policy, Policy)
    if policy.preset not in POLICY_PRESETS:
        p.check(
            f"{path}.Preset", f"unknown preset '{_clip(str(policy.preset))}' (known: read-only)"
        )
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
        return f"vendor '{_clip(vendor)}' is not supported yet"
    return f"unknown vendor '{_clip(vendor)}' (known: {', '.join(known)})"


def _upstream_problem(upstream: str) -> str | None:
    try:
        url = urlsplit(upstream)
        port_ok = url.port is None or url.port > 0
    except ValueError:
        url, port_ok = None, False
    if url is not None and (url.username is not None or url.password is not None):
        return "must not contain user info (user:password@)"
    if url is None or url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        shown = "" if "@" in upstream else f", got '{_clip(upstream, 80)}'"
        return f"expected an http(s) URL with a host{shown}"
    return None


def _check_credential(
    cred: object, path: str, p: _Problems, needed: tuple[str, ...] = ("AccessKey", "SecretKey")
) -> None:
    if not _is_type(p, path, cred, Credential, "a Credential"):
        return
    assert isinstance(cred, Credential)  # for mypy: _is_type just said so
    if not _is_type(p, f"{path}.AccessKey", cred.access_key, str, "a string"):
        pass
    elif not cred.access_key and "AccessKey" in needed:
        p.check(f"{path}.AccessKey", "must not be empty")
    if (
        _is_type(p, f"{path}.SecretKey", cred.secret_key, Secret, "a Secret")
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
            _is_type(p, f"{path}.{key}", value, Secret, "a Secret or None")
        if key in needed and not value:
            p.check(f"{path}.{key}", "must not be empty")


def _check_endpoint(ep: Endpoint, path: str, p: _Problems) -> None:
    if not isinstance(ep.cloud_account_name, str) or not ep.cloud_account_name:
        p.check(f"{path}.CloudAccountName", "must not be empty")
    if not isinstance(ep.vendor, str) or not ep.vendor:
        p.check(f"{path}.Vendor", "must not be empty")
    elif problem := _vendor_problem(ep.vendor):
        p.check(f"{path}.Vendor", problem)
    needed = _required_credential_keys(ep.vendor) if isinstance(ep.vendor, str) else ()
    _check_credential(ep.proxy, f"{path}.Credentials.Proxy", p, needed)
    _check_credential(ep.real, f"{path}.Credentials.Real", p, needed)
    for i, extra in enumerate(ep.additional_proxies):
        _check_credential(extra, f"{path}.Credentials.AdditionalProxies[{i}]", p, needed)
    for key, value in (
        ("MaxBodyBytes", ep.max_body_bytes),
        ("MaxConcurrentRequests", ep.max_concurrent_requests),
    ):
        if value is not None:
            _positive(p, f"{path}.{key}", value, integer=True)
    hosts = ep.allowed_hosts
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip(".") for h in hosts):
        p.check(f"{path}.AllowedHosts", "expected a list of DNS names or suffixes")
    _check_policy(ep.policy, f"{path}.Policy", p)
    _check_key_policy(ep.key_policy, f"{path}.KeyPolicy", p)
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
            out.append((where, signers.credential_id(signers.get(ep.vendor), cred)))
        except (KeyError, TypeError, AttributeError):
            out.append((where, cred.access_key))
    return out


def _check_endpoints(endpoints: list[Endpoint], p: _Problems) -> None:
    if not _is_type(p, "Endpoints", endpoints, list, "a list of Endpoint"):
        return
    names: dict[str, int] = {}
    proxy_keys: dict[str, str] = {}
    for i, ep in enumerate(endpoints):
        path = f"Endpoints[{i}]"
        if not _is_type(p, path, ep, Endpoint, "an Endpoint"):
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


def _check_config(cfg: Config, p: _Problems) -> None:
    sections_ok = all(
        [
            _is_type(p, name, getattr(cfg, attr), kind, what)
            for name, attr, kind, what in _SECTION_TYPES
        ]
    )
    if sections_ok and _is_type(p, "Http.Tls", cfg.http.tls, TlsConfig, "a TlsConfig"):
        _check_http(cfg.http, p)
        _check_sections(cfg, p)
    _check_endpoints(cfg.endpoints, p)
    _check_key_service(cfg.key_service, p)


# --- the key service (keybroker.keyservice) ---------------------------------------------------

_PATH_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def _check_key_policy(kp: object, path: str, p: _Problems) -> None:
    if kp is None or not _is_type(p, path, kp, KeyPolicy, "a KeyPolicy or None"):
        return
    assert isinstance(kp, KeyPolicy)
    if not isinstance(kp.prefixes, list) or not all(isinstance(x, str) for x in kp.prefixes):
        p.check(f"{path}.Prefixes", "expected a list of key id prefixes")
    ops = kp.operations
    if not isinstance(ops, list) or not all(isinstance(x, str) for x in ops):
        p.check(f"{path}.Operations", "expected a list of operations")
        return
    known = ", ".join((*KEY_OPERATIONS, "*"))
    if not ops:
        p.check(f"{path}.Operations", f"name at least one operation ({known})")
    for i, op in enumerate(ops):
        if op != "*" and op not in KEY_OPERATIONS:
            p.check(f"{path}.Operations[{i}]", f"unknown operation '{_clip(op)}' (known: {known})")


def _check_key_service(ks: object, p: _Problems) -> None:
    if not _is_type(p, "KeyService", ks, KeyServiceConfig, "a KeyServiceConfig"):
        return
    assert isinstance(ks, KeyServiceConfig)
    if not _is_type(p, "KeyService.Enabled", ks.enabled, bool, "a boolean") or not ks.enabled:
        return
    if problem := _path_prefix_problem(ks.path_prefix):
        p.check("KeyService.PathPrefix", problem)
    size = ks.max_dek_size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 8160:
        p.check("KeyService.MaxDEKSize", "expected an integer from 1 to 8160 (bytes)")
    if not isinstance(ks.kms, str) or not ks.kms:
        p.check("KeyService.KMS", "required when KeyService.Enabled is true (a kms:// URI)")
    elif not isinstance(ks.storage, str):
        p.check("KeyService.Storage", "expected a storage:// URI")
    else:
        for key, problem in _key_service_uri_problems(ks.kms, ks.storage):
            p.check(f"KeyService.{key}", problem)
    _check_grpc(ks.grpc, p)


def _path_prefix_problem(prefix: object) -> str | None:
    if not isinstance(prefix, str) or not _PATH_PREFIX.fullmatch(prefix.rstrip("/")):
        return "expected a path such as /_keybroker/kms (letters, digits and . _ ~ -)"
    if not prefix.lstrip("/").startswith("_"):
        # so the key service can never shadow a cloud API path in native mode
        return "the first path segment must start with '_' (such as /_keybroker/kms)"
    return None


def _key_service_uri_problems(kms: str, storage: str) -> list[tuple[str, str]]:
    """Parameter checks of the two URIs, without building anything (no file or network)."""
    from keybroker.kms.cluster import ClusterKMS
    from keybroker.kms.registry import load_storage_class, load_wrapper_class, validate_uri
    from keybroker.kms.uri import parse_uri

    out: list[tuple[str, str]] = []
    for key, uri, scheme in (("KMS", kms, "kms"), ("Storage", storage, "storage")):
        if not uri:
            continue
        try:
            parsed = parse_uri(uri)
            if parsed.scheme != scheme:
                out.append((key, f"expected a {scheme}:// URI, not {parsed.scheme}://"))
            elif (scheme, parsed.name) == ("kms", "cluster-kms"):
                ClusterKMS.validate_uri(parsed)
            elif (scheme, parsed.name) == ("storage", "no-store"):
                parsed.check_known()
            else:
                load = load_wrapper_class if scheme == "kms" else load_storage_class
                validate_uri(load(parsed), parsed)
        except KMSError as exc:  # our KMS messages name parameters, never their values
            out.append((key, str(exc)))
    return out


def _check_grpc(grpc: object, p: _Problems) -> None:
    path = "KeyService.Grpc"
    if not _is_type(p, path, grpc, GrpcConfig, "a GrpcConfig"):
        return
    assert isinstance(grpc, GrpcConfig)
    if not _is_type(p, f"{path}.Enabled", grpc.enabled, bool, "a boolean") or not grpc.enabled:
        return
    if problem := _address_problem(grpc.address):
        p.check(f"{path}.Address", problem)
    files: list[tuple[str, str]] = [("CertFile", grpc.cert_file), ("KeyFile", grpc.key_file)]
    if grpc.cert_file or grpc.key_file or grpc.client_ca_file:
        files += [("ClientCAFile", grpc.client_ca_file)] if grpc.client_ca_file else []
        for key, value in files:
            if not value or not isinstance(value, str):
                p.check(f"{path}.{key}", "required for TLS (CertFile and KeyFile go together)")
            elif problem := _readable_problem(value):
                p.check(f"{path}.{key}", problem)


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
    problems = _Problems(source=source)
    reader = _Reader(problems)
    if not isinstance(root, MappingNode):
        got = reader.describe(root)
        raise ConfigError(f"{source}:{_line(root)}: expected a mapping of sections, got {got}")
    top = reader.mapping(root, "", _TOP_KEYS) or {}
    cfg = _build(reader, top, os.environ if env is None else env)
    _normalise(cfg)
    _check_config(cfg, problems)
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


def validate(cfg: Config) -> None:
    """Check a ``Config`` built in Python with the rules ``load`` applies.

    Raises ``ConfigError`` listing every problem; ``TypeError`` if ``cfg`` is not a Config.
    """
    if not isinstance(cfg, Config):
        raise TypeError("validate() needs a keybroker.config.Config")
    problems = _Problems()
    _check_config(cfg, problems)
    problems.raise_if_any()
