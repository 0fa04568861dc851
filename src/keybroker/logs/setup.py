"""Structured logging: JSON lines in key-proxy's ``Log`` directory, rotated by size.

:func:`setup_logging` applies a :class:`~keybroker.settings.LogConfig` to the ``keybroker``
logger tree (key-proxy builds its logger before reading the config and so ignores ``Log``;
we honour every field):

* ``Output`` is a directory, created if missing, holding ``key_proxy.log``; ``""`` or ``"-"``
  logs to stderr instead.
* ``Level`` is ``debug``, ``info``, ``warn`` or ``error``.
* ``MaxSize`` (MB): a line that would take the file past it first moves the file aside as
  ``key_proxy.log.<UTC time>`` (e.g. ``key_proxy.log.20261125T171300Z``; a ``.1``, ``.2``
  suffix is added rather than ever overwriting one).  ``<= 0`` means 100, as in key-proxy.
* ``MaxAge`` (days): at start-up and after each rotation, rotated files whose name says they
  are older are deleted.  ``<= 0`` means 14, as in key-proxy.

Each line is one JSON object made by :class:`~keybroker.logs.format.JsonFormatter`, every value
redacted; :mod:`keybroker.logs.format` describes its fields, among them the ``request_id`` of the
request being served (:data:`REQUEST_ID`) and the structured fields of :func:`log_event`.

Threads: a handler writes each line, or a batch of whole lines, with a single ``write`` under
its lock.  The access line of each request (:func:`request_log_line`) is formatted without a
:class:`logging.LogRecord` when the ``keybroker`` tree is as :func:`setup_logging` left it (a
log file, no filter, no other handler), and buffered (see :mod:`keybroker.logs.file`): it may
reach the file up to 100 ms late, never out of order with the other lines.  Processes: each
worker process writes through its own handler on its own ``O_APPEND`` descriptor, so the
kernel appends every write whole and lines of different processes never interleave within a
line.  A process that finds the file full rotates it; the others see their (renamed) file
full on their next line, notice the name now points to a new file and reopen it.  Two
processes rotating at the same instant can leave one file under two rotated names (hard
links); no line is lost or torn.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from keybroker.errors import ConfigError
from keybroker.logs.file import Clock, SizeRotatingFileHandler
from keybroker.logs.format import JsonFormatter
from keybroker.logs.redact import SECRETS, SecretRegistry
from keybroker.settings import LogConfig

__all__ = [
    "ACCESS_LOGGER",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_SIZE_MB",
    "LOGGER_NAME",
    "log_event",
    "parse_level",
    "request_log_line",
    "reset_logging",
    "setup_logging",
]

LOGGER_NAME = "keybroker"
DEFAULT_MAX_AGE_DAYS = 14
DEFAULT_MAX_SIZE_MB = 100

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_OWNED = "_keybroker_owned"  # marks the handlers setup_logging installed (and may replace)
_setup_lock = threading.Lock()


def parse_level(name: str) -> int:
    """The :mod:`logging` level of a ``Log.Level`` value (case-insensitive).

    Raises :class:`~keybroker.errors.ConfigError` for anything but debug|info|warn|error.
    """
    level = _LEVELS.get(name.strip().lower()) if isinstance(name, str) else None
    if level is None:
        raise ConfigError("Log.Level: must be one of debug, info, warn, error")
    return level


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (so redirection is honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


# --- set-up -----------------------------------------------------------------------------


def setup_logging(
    cfg: LogConfig, *, clock: Clock = time.time, registry: SecretRegistry = SECRETS
) -> None:
    """Send the ``keybroker`` logger tree to the place ``cfg`` names, at its level.

    Safe to call again (config reload): the new handler is installed before the previous
    one set up here is removed and closed; handlers added by anyone else are left alone.
    The tree stops propagating to the root logger, so lines are not written twice when an
    application also configures root.  Raises :class:`~keybroker.errors.ConfigError` for a
    bad level or an output directory that cannot be created or opened; the previous
    set-up then stays in force.
    """
    level = parse_level(cfg.level)
    handler = _build_handler(cfg, clock)
    handler.setFormatter(JsonFormatter(registry))
    setattr(handler, _OWNED, True)
    logger = logging.getLogger(LOGGER_NAME)
    with _setup_lock:
        previous = [h for h in logger.handlers if getattr(h, _OWNED, False)]
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
        for old in previous:
            logger.removeHandler(old)
            old.close()


def reset_logging() -> None:
    """Undo :func:`setup_logging`: remove and close its handlers, propagate to root again."""
    logger = logging.getLogger(LOGGER_NAME)
    with _setup_lock:
        for old in [h for h in logger.handlers if getattr(h, _OWNED, False)]:
            logger.removeHandler(old)
            old.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _build_handler(cfg: LogConfig, clock: Clock) -> logging.Handler:
    output = cfg.output.strip()
    if output in ("", "-"):
        return _StderrHandler()
    max_age = cfg.max_age if cfg.max_age > 0 else DEFAULT_MAX_AGE_DAYS
    max_size = cfg.max_size if cfg.max_size > 0 else DEFAULT_MAX_SIZE_MB
    try:
        os.makedirs(output, mode=0o750, exist_ok=True)
        return SizeRotatingFileHandler(
            output, max_bytes=max_size * 1024 * 1024, max_age_days=max_age, clock=clock
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"Log.Output: cannot write logs in {output!r}: {reason}") from exc


# --- helpers for callers ----------------------------------------------------------------


def log_event(
    logger: logging.Logger | str, level: int | str, msg: str, /, **fields: object
) -> None:
    """Log ``msg`` with structured ``fields`` (each becomes a key of the JSON line).

    ``level`` is a :mod:`logging` number or a ``Log.Level`` name.  ``msg`` is not
    %-formatted.  Raises :class:`ValueError` for an unknown level name.
    """
    target = logging.getLogger(logger) if isinstance(logger, str) else logger
    number = level if isinstance(level, int) else _LEVELS.get(level.strip().lower())
    if number is None:
        raise ValueError("level must be one of debug, info, warn, error or a logging level")
    if target.isEnabledFor(number):
        target.log(number, "%s", msg, extra={"fields": fields}, stacklevel=2)


_MODES = frozenset({"keyproxy", "native", "keyservice"})
_MAX_TEXT = 256  # request-derived strings are capped: a log line is not a dump channel
ACCESS_LOGGER = LOGGER_NAME + ".access"


def request_log_line(
    *,
    request_id: str,
    method: str,
    mode: str,
    status: int,
    client_request_id: str | None = None,
    account: str | None = None,
    vendor: str | None = None,
    service: str | None = None,
    action: str | None = None,
    upstream_host: str | None = None,
    bytes_in: int = 0,
    bytes_out: int = 0,
    latency_ms: float = 0.0,
    error_code: str | None = None,
    logger: logging.Logger | None = None,
) -> dict[str, object]:
    """Write the one access line of a finished request and return its fields.

    The record holds names and numbers only: no header, query, body or credential; strings
    taken from the request are cut to 256 characters and ``upstream_host`` is reduced to
    ``host[:port]``.  5xx answers are logged at warn, everything else at info, on
    ``keybroker.access``.  Raises :class:`ValueError` for a ``mode`` other than ``keyproxy``
    or ``native``.
    """
    if mode not in _MODES:
        raise ValueError("mode must be 'keyproxy', 'native' or 'keyservice'")
    status_code = int(status)
    fields: dict[str, object] = {
        "request_id": _cap(request_id),
        "client_request_id": _cap(client_request_id),
        "method": _cap(method),
        "mode": mode,
        "account": _cap(account),
        "vendor": _cap(vendor),
        "service": _cap(service),
        "action": _cap(action),
        "upstream_host": _cap(_host_only(upstream_host)),
        "status": status_code,
        "bytes_in": int(bytes_in),
        "bytes_out": int(bytes_out),
        "latency_ms": round(float(latency_ms), 3),
        "error_code": _cap(error_code),
    }
    level = logging.WARNING if status_code >= 500 else logging.INFO
    target = logger or _access_logger()
    if target.isEnabledFor(level):
        handler = _direct_handler(target, level)
        line = None
        if handler is not None:
            formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
            line = formatter.format_access(target.name, level, fields, time.time())
        if handler is None or line is None:
            target.log(level, "request", extra={"fields": fields, "trusted_fields": True})
        else:
            _write_direct(handler, target, level, line)
    return fields


def _access_logger() -> logging.Logger:
    global _ACCESS
    if _ACCESS is None:
        _ACCESS = logging.getLogger(ACCESS_LOGGER)
    return _ACCESS


_ACCESS: logging.Logger | None = None


def _direct_handler(logger: logging.Logger, level: int) -> SizeRotatingFileHandler | None:
    """The handler a ``level`` record of ``logger`` would reach, if it is the only one and
    nothing between would look at the record: a log file of :func:`setup_logging`'s making on
    the parent, no filters, no other handler on the way.  Else ``None``."""
    if logger.handlers or logger.filters or logger.disabled or not logger.propagate:
        return None
    parent = logger.parent
    if parent is None or parent.propagate or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    if (
        type(handler) is not SizeRotatingFileHandler
        or type(handler.formatter) is not JsonFormatter
        or handler.filters
        or level < handler.level
    ):
        return None
    return handler


def _write_direct(
    handler: SizeRotatingFileHandler, logger: logging.Logger, level: int, line: str
) -> None:
    try:
        handler.write_line(line, urgent=level >= logging.WARNING)
    except Exception:
        handler.handleError(logger.makeRecord(logger.name, level, "", 0, "request", (), None))


def _cap(text: str | None) -> str | None:
    return None if text is None else str(text)[:_MAX_TEXT]


def _host_only(host: str | None) -> str | None:
    """``host[:port]`` of a host or URL: no scheme, user info, path or query."""
    if host is None:
        return None
    rest = host.split("://", 1)[-1]
    rest = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return rest.rsplit("@", 1)[-1]
