"""The JSON line format of the ``keybroker`` logs: :class:`JsonFormatter` and its helpers.

Each line is one JSON object: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``pid``, ``msg``, the ``request_id`` of the request being served (:data:`REQUEST_ID`), the
structured fields given with ``extra={"fields": {...}}`` or :func:`keybroker.logs.setup.log_event`,
and ``exc`` (the traceback on one line).  Every value goes through :mod:`keybroker.logs.redact`:
credential-named fields are masked, URLs and header maps redacted, and registered secrets
scrubbed.  :meth:`JsonFormatter.format_access` spells the access line of a request without a
:class:`logging.LogRecord`, byte for byte as :meth:`JsonFormatter.format` would.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from keybroker.logs.redact import (
    MASK,
    SECRETS,
    SecretRegistry,
    is_secret_name,
    redact_authorization,
    redact_headers,
    redact_text,
    redact_url,
)
from keybroker.secret import Secret

__all__ = ["REQUEST_ID", "JsonFormatter"]

REQUEST_ID: ContextVar[str | None] = ContextVar("keybroker_request_id", default=None)
"""The id of the request being served; set it per request and every line carries it."""

_LEVEL_NAMES = {logging.WARNING: "warn", logging.CRITICAL: "fatal"}
# Field names that would overwrite the line's own keys; such fields get a "fields." prefix.
# (A ``request_id`` field is welcome: it states the id explicitly, over REQUEST_ID.)
_RESERVED = frozenset({"time", "level", "logger", "msg", "exc", "stack"})
_MAX_DEPTH = 4


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line, with every value redacted."""

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self.registry = registry
        self._msg_cache: tuple[object, str] | None = None

    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(self._entry(record), separators=(",", ":"))
        return self._sealed(line, lambda: self._head(record))

    def format_access(
        self, logger: str, level: int, fields: Mapping[str, Any], created: float
    ) -> str | None:
        """The line :meth:`format` makes of an access record, without the record.

        ``fields`` as built by :func:`request_log_line`: ``request_id`` first, strings or
        ``None``, ``int`` numbers and a ``float`` latency.  ``None`` for a latency that is not
        a finite number (:meth:`format` spells that one).
        """
        latency = fields["latency_ms"]
        if not math.isfinite(latency):
            return None
        stamp, name = _rfc3339(created), _level_name(level)
        pid = os.getpid() if logging.logProcesses else None
        f, s, n = fields, _JSON_STR, int.__repr__
        line = (
            f'{{"time":"{stamp}","level":{s(name)},"logger":{s(logger)}'
            f',"pid":{"null" if pid is None else n(pid)},"msg":{s(self._request_msg())}'
            f',"request_id":{s(f["request_id"])}'
            f',"client_request_id":{_json_str(f["client_request_id"])},"method":{s(f["method"])}'
            f',"mode":{s(f["mode"])},"account":{_json_str(f["account"])}'
            f',"vendor":{_json_str(f["vendor"])},"service":{_json_str(f["service"])}'
            f',"action":{_json_str(f["action"])}'
            f',"upstream_host":{_json_str(f["upstream_host"])},"status":{n(f["status"])}'
            f',"bytes_in":{n(f["bytes_in"])},"bytes_out":{n(f["bytes_out"])}'
            f',"latency_ms":{float.__repr__(latency)},"error_code":{_json_str(f["error_code"])}}}'
        )
        return self._sealed(
            line, lambda: {"time": stamp, "level": name, "logger": logger, "pid": pid}
        )

    def _request_msg(self) -> str:
        # "request" through the same redaction as any message (a registered secret could be
        # a part of it), once per set of registered secrets.
        pattern = self.registry.pattern
        cached = self._msg_cache
        if cached is None or cached[0] is not pattern:
            cached = self._msg_cache = (pattern, self._text("request"))
        return cached[1]

    def _sealed(self, line: str, head: Callable[[], dict[str, object]]) -> str:
        """``line`` scrubbed of registered secrets, still JSON, or a line saying it was not."""
        scrubbed = self.registry.scrub(line)
        if scrubbed == line or _is_json(scrubbed):
            return scrubbed
        # A secret spanning two JSON values: masking it broke the syntax.  Say so, keep no text.
        withheld = {**head(), "msg": "log line withheld: it held a registered secret"}
        fallback = self.registry.scrub(json.dumps(withheld, separators=(",", ":")))
        # Only a "secret" made of JSON punctuation and our own key names gets this far.
        return fallback if _is_json(fallback) else "{}"

    def _head(self, record: logging.LogRecord) -> dict[str, object]:
        return {
            "time": _rfc3339(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "pid": record.process,  # which worker process wrote it
        }

    def _entry(self, record: logging.LogRecord) -> dict[str, object]:
        entry = self._head(record)
        entry["msg"] = self._text(_message(record))
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = self._text(request_id)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping) and getattr(record, "trusted_fields", False):
            # The access line: names and numbers built by request_log_line (strings capped,
            # no header, query or body).  The whole line is still scrubbed of every
            # registered secret in format(); per-field redaction is skipped on this hot path.
            entry.update(fields)
        elif isinstance(fields, Mapping):
            for key, value in fields.items():
                name = self.registry.scrub(str(key))
                entry[f"fields.{name}" if name in _RESERVED else name] = self._field(name, value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc"] = self._text(_one_line(self.formatException(record.exc_info)))
        if record.stack_info:
            entry["stack"] = self._text(_one_line(record.stack_info))
        return entry

    def _text(self, text: str) -> str:
        return self.registry.scrub(redact_text(text))

    def _field(self, name: str, value: object, depth: int = 0) -> object:
        """A JSON-ready, redacted copy of a field value; the name decides what to hide."""
        lowered = name.lower()
        if lowered in ("authorization", "proxy-authorization"):
            return self._text(redact_authorization(value)) if isinstance(value, str) else MASK
        if is_secret_name(lowered) and value is not None:
            return MASK
        if lowered.endswith(("url", "uri")) and isinstance(value, str):
            return self._text(redact_url(value))
        if lowered.endswith("headers") and isinstance(value, Mapping):
            value = redact_headers({str(k): str(v) for k, v in value.items()})
        return self._value(value, depth)

    def _value(self, value: object, depth: int) -> object:
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, Secret):
            return MASK
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"  # bodies are never logged
        if depth >= _MAX_DEPTH:
            return "<nested too deep>"
        if isinstance(value, Mapping):
            return {
                self.registry.scrub(str(k)): self._field(str(k), v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(v, depth + 1) for v in value]
        return self._text(_safe_str(value))


_stamp_cache: tuple[int, str] = (-1, "")


def _rfc3339(created: float) -> str:
    global _stamp_cache
    second = int(created)
    cached_second, prefix = _stamp_cache
    if second != cached_second:  # one strftime per second, not per line
        prefix = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _stamp_cache = (second, prefix)
    return f"{prefix}.{int((created - second) * 1000):03d}Z"


def _level_name(level: int) -> str:
    return _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()


_JSON_STR: Callable[[str], str] = encode_basestring_ascii  # json.dumps of a str, in C


def _json_str(text: str | None) -> str:
    """``json.dumps`` of a ``str`` or ``None``."""
    return "null" if text is None else _JSON_STR(text)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format/argument pair must not lose the line
        return f"{_safe_str(record.msg)} (log arguments did not format)"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _one_line(text: str) -> str:
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True
