"""Audit events: the fields one line of the audit log may hold, checked and cleaned.

:func:`clean_event` turns a caller's mapping into the fields
:class:`~keybroker.audit.trail.AuditLog`
writes (names checked, values flattened to JSON scalars, configured secrets masked);
:func:`request_event` builds the event of a proxied request (written ahead of the forward, or
once a refused one is answered), :func:`outcome_event` the record of how a forwarded one
ended, :func:`audit_path` the request target with every credential-bearing parameter removed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from urllib.parse import unquote_plus, urlsplit

from keybroker.context import RequestContext
from keybroker.logs.redact import SECRETS, SecretRegistry, is_secret_name
from keybroker.secret import Secret
from keybroker.settings import Policy

__all__ = ["audit_path", "clean_event", "outcome_event", "policy_rule", "request_event"]

Scalar = str | int | float | bool | None

_RESERVED = frozenset({"time", "seq", "prev", "start", "hash"})
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")


def clean_event(event: Mapping[str, object], registry: SecretRegistry) -> dict[str, object]:
    """A copy of ``event`` fit for the log.  Raises ``TypeError``/``ValueError`` on misuse."""
    if not isinstance(event, Mapping):
        raise TypeError("an audit event must be a mapping of field names to values")
    clean: dict[str, object] = {}
    texts: list[str] = []
    for key, value in event.items():
        name = _check_key(key)
        clean[name] = cleaned = _clean_value(name, value)
        texts.append(name)
        if isinstance(cleaned, str):
            texts.append(cleaned)
        elif isinstance(cleaned, list):
            texts.extend(item for item in cleaned if isinstance(item, str))
    # one pass over every name and text finds whether any holds a configured secret (a
    # value found in a part is found in the whole); only then each is scrubbed on its own
    joined = "\0".join(texts)
    return clean if registry.scrub(joined) == joined else _scrubbed(clean, registry)


def _scrubbed(clean: dict[str, object], registry: SecretRegistry) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in clean.items():
        if registry.scrub(name) != name:  # checked after the shape, so never echoed
            raise ValueError("an audit event field name holds a configured secret value")
        if isinstance(value, str):
            out[name] = registry.scrub(value)  # a configured secret never reaches the file
        elif isinstance(value, list):
            out[name] = [registry.scrub(v) if isinstance(v, str) else v for v in value]
        else:
            out[name] = value
    return out


def _check_key(key: object) -> str:
    if isinstance(key, str) and key in _GOOD_KEYS:
        return key
    name = _checked_key(key)
    if len(_GOOD_KEYS) < 1024:  # field names are few: remember the good ones
        _GOOD_KEYS.add(name)
    return name


_GOOD_KEYS: set[str] = set()


def _checked_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            "audit event field names must be 1-64 characters of A-Z a-z 0-9 _ . - "
            "(not starting with . or -)"
        )
    if key in _RESERVED:
        raise ValueError(f"audit event field {key!r} is reserved for the chain")
    if is_secret_name(key):
        raise ValueError(f"audit event field {key!r} looks like a credential; not recorded")
    return key


def _clean_value(name: str, value: object) -> object:
    if name == "decision" and value not in ("allow", "deny"):
        raise ValueError("audit event field 'decision' must be 'allow' or 'deny'")
    if value is None or value.__class__ is int or value.__class__ is str:
        return value
    if isinstance(value, list | tuple):
        return [_clean_scalar(name, item) for item in value]
    return _clean_scalar(name, value)


def _clean_scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit event field {name!r}: numbers must be finite")
        return value
    if isinstance(value, str):
        return str.__str__(value)  # a str subclass becomes a plain str
    if isinstance(value, Secret | bytes | bytearray | memoryview):
        raise TypeError(f"audit event field {name!r}: secrets and bytes are never recorded")
    raise TypeError(
        f"audit event field {name!r}: values must be str, int, float, bool, None "
        f"or a list of those, not {type(value).__name__}"
    )


_MAX_TEXT = 256  # request-derived strings are capped, as in the access log
_MAX_PATH = 1024

# Query parameters that carry a signature, a credential or who signed (presigned URLs and
# query-signed APIs of the supported vendors); compared on the decoded, lower-cased name.
_CREDENTIAL_PARAMS = frozenset(
    {
        "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
        "signature", "accesskeyid", "access_key_id", "ossaccesskeyid", "x-oss-signature",
        "x-oss-credential", "x-oss-access-key-id", "x-goog-signature", "x-goog-credential",
        "googleaccessid", "q-signature", "q-ak", "q-key-time", "q-sign-time", "x-tos-signature",
        "x-tos-credential", "x-tos-security-token", "x-obs-signature", "authorization", "e",
        "sign", "secretid", "x-bce-signature", "x-jdcloud-signature", "x-cos-security-token",
    }
)  # fmt: skip
_CREDENTIAL_WORDS = ("credential", "accesskey", "access_key", "access-key", "auth")


def audit_path(target: str, registry: SecretRegistry = SECRETS) -> str:
    """``path?query`` with every signature, credential or token parameter removed.

    A parameter goes when its decoded name is one of the vendors' signature or credential
    parameters, looks like a credential (:func:`~keybroker.logs.redact.is_secret_name`), or when
    its decoded value holds a configured secret.  Capped at 1 KiB."""
    path, sep, query = target.partition("?")
    if not sep:
        return _cap_path(path)
    kept = [part for part in query.split("&") if part and not _credential_param(part, registry)]
    return _cap_path(path + ("?" + "&".join(kept) if kept else ""))


def _credential_param(part: str, registry: SecretRegistry) -> bool:
    raw_name, _, raw_value = part.partition("=")
    name = unquote_plus(raw_name, errors="replace").strip().lower()
    if name in _CREDENTIAL_PARAMS or is_secret_name(name):
        return True
    if any(word in name for word in _CREDENTIAL_WORDS):
        return True
    value = unquote_plus(raw_value, errors="replace")
    return registry.scrub(value) != value or registry.scrub(raw_value) != raw_value


def _cap_path(text: str) -> str:
    return text if len(text) <= _MAX_PATH else text[:_MAX_PATH] + "..."


def request_event(
    ctx: RequestContext, *, decision: str | None = None, now: float | None = None
) -> dict[str, object]:
    """The audit event of a proxied request.

    ``decision`` defaults to ``deny`` when the proxy itself refused or failed the request
    (``ctx.error_code`` set) and ``allow`` otherwise: a vendor's own error passed through is
    still a request the proxy allowed, and so is one forwarded unverified because a
    ``Forbidden`` flag is off (its write-ahead record passes ``allow``).  ``now`` is a
    :func:`time.perf_counter` reading (default: the current one) for ``latency_ms``.  Only
    the upstream ``host[:port]`` is kept, and the path without credential parameters
    (:func:`audit_path`); ``rule`` is the refusal's reason (it names the policy rule) or, when
    allowed, the policy that let it through.
    """
    elapsed = (time.perf_counter() if now is None else now) - ctx.started
    refused = ctx.error_code is not None if decision is None else decision == "deny"
    return {
        "event": "request",
        "request_id": _cap(ctx.request_id),
        "client_request_id": _cap(ctx.client_request_id),
        "source_ip": _cap(ctx.remote),
        "mode": ctx.mode,
        "method": _cap(ctx.method),
        "path": ctx.path,
        "account": _cap(ctx.account),
        "vendor": _cap(ctx.vendor),
        "service": _cap(ctx.service),
        "region": _cap(ctx.region),
        "action": _cap(ctx.action),
        "resource": _cap(ctx.resource),
        "read_only": ctx.read_only,
        "upstream_host": _cap(_netloc(ctx.upstream_url)),
        "decision": decision or ("deny" if refused else "allow"),
        "rule": _cap(ctx.reason if refused else ctx.rule),
        "status": ctx.status,
        "latency_ms": round(max(elapsed, 0.0) * 1000, 3),
        "error_code": _cap(ctx.error_code),
    }


def policy_rule(policy: Policy) -> str:
    """What of an account's policy let a request through, for the audit record."""
    parts = [f"preset {policy.preset}"] if policy.preset else []
    for name, values in (
        ("services", policy.services),
        ("actions", policy.actions),
        ("deny_actions", policy.deny_actions),
        ("regions", policy.regions),
        ("source_cidrs", policy.source_cidrs),
    ):
        if values:
            parts.append(f"{name} {','.join(values)}")
    return _cap("; ".join(parts) or "no policy restriction") or ""


def outcome_event(ctx: RequestContext, *, now: float | None = None) -> dict[str, object]:
    """How a forwarded request ended, linked to its write-ahead record by ``request_id``."""
    elapsed = (time.perf_counter() if now is None else now) - ctx.started
    return {
        "event": "outcome",
        "request_id": _cap(ctx.request_id),
        "status": ctx.status,
        "bytes_out": ctx.bytes_out,
        "latency_ms": round(max(elapsed, 0.0) * 1000, 3),
        "error_code": _cap(ctx.error_code),
    }


def _cap(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_TEXT]


def _netloc(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if host is None:
        return None
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"
