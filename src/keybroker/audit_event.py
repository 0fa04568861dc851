"""Audit events: the fields one line of the audit log may hold, checked and cleaned.

:func:`clean_event` turns a caller's mapping into the fields :class:`~keybroker.audit.AuditLog`
writes (names checked, values flattened to JSON scalars, configured secrets masked);
:func:`request_event` builds the event of a finished proxied request.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from keybroker.context import RequestContext
from keybroker.redact import SecretRegistry, is_secret_name
from keybroker.secret import Secret

__all__ = ["clean_event", "request_event"]

Scalar = str | int | float | bool | None

_RESERVED = frozenset({"time", "seq", "prev", "start", "hash"})
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")


def clean_event(event: Mapping[str, object], registry: SecretRegistry) -> dict[str, object]:
    """A copy of ``event`` fit for the log.  Raises ``TypeError``/``ValueError`` on misuse."""
    if not isinstance(event, Mapping):
        raise TypeError("an audit event must be a mapping of field names to values")
    clean: dict[str, object] = {}
    for key, value in event.items():
        name = _check_key(key)
        if registry.scrub(name) != name:  # checked after the shape, so never echoed
            raise ValueError("an audit event field name holds a configured secret value")
        clean[name] = _clean_value(name, value, registry)
    return clean


def _check_key(key: object) -> str:
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


def _clean_value(name: str, value: object, registry: SecretRegistry) -> object:
    if name == "decision" and value not in ("allow", "deny"):
        raise ValueError("audit event field 'decision' must be 'allow' or 'deny'")
    if isinstance(value, list | tuple):
        return [_clean_scalar(name, item, registry) for item in value]
    return _clean_scalar(name, value, registry)


def _clean_scalar(name: str, value: object, registry: SecretRegistry) -> Scalar:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit event field {name!r}: numbers must be finite")
        return value
    if isinstance(value, str):
        return registry.scrub(value)  # a configured secret never reaches the file
    if isinstance(value, Secret | bytes | bytearray | memoryview):
        raise TypeError(f"audit event field {name!r}: secrets and bytes are never recorded")
    raise TypeError(
        f"audit event field {name!r}: values must be str, int, float, bool, None "
        f"or a list of those, not {type(value).__name__}"
    )


_MAX_TEXT = 256  # request-derived strings are capped, as in the access log


def request_event(
    ctx: RequestContext, *, decision: str | None = None, now: float | None = None
) -> dict[str, object]:
    """The audit event of a finished proxied request.

    ``decision`` defaults to ``deny`` when the proxy itself refused or failed the request
    (``ctx.error_code`` set) and ``allow`` otherwise: a vendor's own error passed through is
    still a request the proxy allowed.  ``now`` is a :func:`time.perf_counter` reading
    (default: the current one) for ``latency_ms``.  Only the upstream ``host[:port]`` is kept,
    never a path or query.
    """
    elapsed = (time.perf_counter() if now is None else now) - ctx.started
    return {
        "request_id": _cap(ctx.request_id),
        "source_ip": _cap(ctx.remote),
        "mode": ctx.mode,
        "account": _cap(ctx.account),
        "vendor": _cap(ctx.vendor),
        "service": _cap(ctx.service),
        "region": _cap(ctx.region),
        "action": _cap(ctx.action),
        "upstream_host": _cap(_netloc(ctx.upstream_url)),
        "decision": decision or ("deny" if ctx.error_code else "allow"),
        "status": ctx.status,
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
