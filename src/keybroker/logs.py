"""Structured logging: JSON lines in key-proxy's ``Log`` directory, rotated by size.

:func:`setup_logging` applies a :class:`~keybroker.config.LogConfig` to the ``keybroker``
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

Each line is one JSON object: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``msg``, the ``request_id`` of the request being served (:data:`REQUEST_ID`), the structured
fields given with ``extra={"fields": {...}}`` or :func:`log_event`, and ``exc`` (the
traceback on one line).  Every value goes through :mod:`keybroker.redact`: credential-named
fields are masked, URLs and header maps redacted, and registered secrets scrubbed.

Threads: a handler writes each line with a single ``write`` under its lock.  Processes: each
worker process writes through its own handler on its own ``O_APPEND`` descriptor, so the
kernel appends every line whole and lines of different processes never interleave within a
line.  A process that finds the file full rotates it; the others see their (renamed) file
full on their next line, notice the name now points to a new file and reopen it.  Two
processes rotating at the same instant can leave one file under two rotated names (hard
links); no line is lost or torn.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

from keybroker.config import LogConfig
from keybroker.errors import ConfigError
from keybroker.redact import (
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

__all__ = [
    "ACCESS_LOGGER",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_SIZE_MB",
    "LOGGER_NAME",
    "LOG_FILE_NAME",
    "REQUEST_ID",
    "JsonFormatter",
    "SizeRotatingFileHandler",
    "log_event",
    "parse_level",
    "request_log_line",
    "reset_logging",
    "setup_logging",
]

LOGGER_NAME = "keybroker"
LOG_FILE_NAME = "key_proxy.log"  # key-proxy's name, so existing log shippers keep working
DEFAULT_MAX_AGE_DAYS = 14
DEFAULT_MAX_SIZE_MB = 100

REQUEST_ID: ContextVar[str | None] = ContextVar("keybroker_request_id", default=None)
"""The id of the request being served; set it per request and every line carries it."""

Clock = Callable[[], float]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_LEVEL_NAMES = {logging.WARNING: "warn", logging.CRITICAL: "fatal"}
# Field names that would overwrite the line's own keys; such fields get a "fields." prefix.
# (A ``request_id`` field is welcome: it states the id explicitly, over REQUEST_ID.)
_RESERVED = frozenset({"time", "level", "logger", "msg", "exc", "stack"})
_MAX_DEPTH = 4
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


# --- formatting -------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line, with every value redacted."""

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self.registry = registry

    def format(self, record: logging.LogRecord) -> str:
        line = json.dumps(self._entry(record), separators=(",", ":"))
        scrubbed = self.registry.scrub(line)
        if scrubbed == line or _is_json(scrubbed):
            return scrubbed
        # A secret spanning two JSON values: masking it broke the syntax.  Say so, keep no text.
        withheld = {**self._head(record), "msg": "log line withheld: it held a registered secret"}
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
        if isinstance(fields, Mapping):
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


def _rfc3339(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


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


# --- the file ---------------------------------------------------------------------------

_STAMP = "%Y%m%dT%H%M%SZ"
_ROTATED_NAME = re.compile(re.escape(LOG_FILE_NAME) + r"\.(\d{8}T\d{6}Z)(?:\.\d+)?")
_DAY = 86400.0


class SizeRotatingFileHandler(logging.Handler):
    """Appends lines to ``<directory>/key_proxy.log``; rotates by size, prunes by age.

    ``clock`` (seconds since the epoch) names rotated files and decides their age, so tests
    need no sleeping.  Raises :class:`OSError` if the file cannot be opened.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        max_age_days: int,
        clock: Clock = time.time,
    ) -> None:
        super().__init__()
        if max_bytes <= 0 or max_age_days <= 0:
            raise ValueError("max_bytes and max_age_days must be positive")
        self.directory = Path(directory)
        self.path = self.directory / LOG_FILE_NAME
        self.max_bytes = max_bytes
        self.max_age_days = max_age_days
        self._clock = clock
        self._fd = -1
        self._open()
        try:
            self.prune()
        except OSError:
            self.close()
            raise

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd < 0:
            return  # closed by a reconfiguration while this record was on its way
        try:
            self._write((self.format(record) + "\n").encode("utf-8", "backslashreplace"))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        finally:
            self.release()
        super().close()

    def prune(self) -> int:
        """Delete rotated files older than ``max_age_days``; return how many were deleted."""
        cutoff = self._clock() - self.max_age_days * _DAY
        deleted = 0
        for entry in os.scandir(self.directory):
            stamp = _rotated_at(entry.name)
            if stamp is not None and stamp < cutoff:
                try:
                    os.unlink(entry.path)
                    deleted += 1
                except FileNotFoundError:
                    pass  # another process pruned it first
        return deleted

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o640)

    def _write(self, data: bytes) -> None:
        # The file's own size, not a count of our bytes: other processes append to it too,
        # and a file another process rotated away shows up here as full.
        if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
            self._make_room(len(data))
        view = memoryview(data)
        while view:  # a regular file takes it in one write; loop only on a short write
            view = view[os.write(self._fd, view) :]

    def _make_room(self, incoming: int) -> None:
        # Check-and-rotate must be atomic across worker processes: without the lock, two
        # processes can both rotate, and the second one's unlink removes the fresh file the
        # first one is already writing to (its lines would be lost).
        with self._rotation_lock():
            if self._replaced():
                os.close(self._fd)
                self._open()
            size = os.fstat(self._fd).st_size
            if size > 0 and size + incoming > self.max_bytes:
                self._rotate()

    @contextlib.contextmanager
    def _rotation_lock(self) -> Iterator[None]:
        # The directory itself is the lock: no extra file appears next to the logs.
        fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _replaced(self) -> bool:
        """Was the file renamed away (by another process) since we opened it?"""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        ours = os.fstat(self._fd)
        return (on_disk.st_dev, on_disk.st_ino) != (ours.st_dev, ours.st_ino)

    def _rotate(self) -> None:
        _move_aside(self.path, self._clock())
        os.close(self._fd)
        self._open()
        # A failed clean-up must not stop logging; the next rotation retries it.
        with contextlib.suppress(OSError):
            self.prune()


def _rotated_at(name: str) -> float | None:
    """The UTC time in a rotated file's name, or ``None`` if ``name`` is not one."""
    match = _ROTATED_NAME.fullmatch(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _move_aside(path: Path, now: float) -> None:
    """Rename ``path`` to ``path.<stamp>[.n]``, never replacing an existing file.

    ``link`` + ``unlink`` fails instead of overwriting when the name is taken (a plain
    ``rename`` would silently replace it); file systems without hard links fall back to
    ``rename`` after an existence check.
    """
    base = f"{path}.{datetime.fromtimestamp(now, tz=UTC).strftime(_STAMP)}"
    for n in range(10_000):
        target = base if n == 0 else f"{base}.{n}"
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except FileNotFoundError:
            return  # another process moved it already
        except OSError:
            if os.path.exists(target):
                continue
            os.rename(path, target)
            return
        with contextlib.suppress(FileNotFoundError):  # another process unlinked it
            os.unlink(path)
        return
    raise OSError(f"no free name to rotate {path.name} into")


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
    target = logger or logging.getLogger(ACCESS_LOGGER)
    if target.isEnabledFor(level):
        target.log(level, "request", extra={"fields": fields})
    return fields


def _cap(text: str | None) -> str | None:
    return None if text is None else str(text)[:_MAX_TEXT]


def _host_only(host: str | None) -> str | None:
    """``host[:port]`` of a host or URL: no scheme, user info, path or query."""
    if host is None:
        return None
    rest = host.split("://", 1)[-1]
    rest = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return rest.rsplit("@", 1)[-1]
