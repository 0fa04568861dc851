"""A second sink for the audit log: the same JSON lines to stdout or syslog, for a SIEM.

``Audit.Mirror: stdout`` writes each line to standard output; ``syslog`` sends it to the local
syslog socket ``/dev/log``, ``syslog:/path/to/socket`` to another local socket and
``syslog://host:514`` over UDP — one datagram per line, ``<86>keybroker-audit: <JSON>``
(facility ``authpriv``, severity ``info``).  The file stays the record of truth: a mirror
that fails is counted (``keybroker_audit_failures_total{sink="mirror"}``) and logged without
the line, and never refuses a request.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable

from keybroker.errors import ConfigError
from keybroker.metrics import instruments as metrics

__all__ = ["mirror_problem", "open_mirror"]
_log = logging.getLogger("keybroker.audit")


_EXPECTED = "expected 'stdout', 'syslog', 'syslog:/socket/path' or 'syslog://host:port'"


def open_mirror(name: str) -> Callable[[bytes], None] | None:
    """The mirror ``Audit.Mirror`` names (``None`` for none).  Raises ``ConfigError``."""
    target = _target(name)
    if target is None:
        return None
    if target == "stdout":
        return _Guarded(_to_stdout)
    syslog = _Syslog(target)
    return _Guarded(syslog.send, syslog.close)


def mirror_problem(name: str) -> str | None:
    """Why ``name`` is not a valid ``Audit.Mirror`` (``None`` when it is); opens nothing."""
    try:
        _target(name)
    except ConfigError as exc:
        return str(exc).removeprefix("Audit.Mirror: ")
    return None


def _target(name: str) -> str | tuple[str, int] | None:
    """``None``, ``"stdout"``, or a syslog socket path or ``(host, port)``."""
    word = name.strip()
    if word == "":
        return None
    if word.lower() == "stdout":
        return "stdout"
    if word.lower() == "syslog" or word.startswith("syslog:"):
        return _syslog_address(word)
    raise ConfigError(f"Audit.Mirror: {_EXPECTED}, got {name[:40]!r}")


def _syslog_address(word: str) -> str | tuple[str, int]:
    if word.lower() == "syslog":
        return "/dev/log"
    rest = word[len("syslog:") :]
    if rest.startswith("//"):
        host, _, port = rest[2:].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("Audit.Mirror: syslog://HOST:PORT needs a host and a port")
        return host.strip("[]"), int(port)
    if not rest.startswith("/"):
        raise ConfigError("Audit.Mirror: syslog:PATH needs an absolute socket path")
    return rest


class _Syslog:
    """One datagram per line to a syslog socket (reconnected after a failure)."""

    _PREFIX = b"<86>keybroker-audit: "  # authpriv (10) * 8 + info (6)

    def __init__(self, address: str | tuple[str, int]) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    def send(self, line: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.send(self._PREFIX + line.rstrip(b"\n"))
        except OSError:
            self._sock.close()
            self._sock = None
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if isinstance(self.address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        else:
            family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock


def _to_stdout(line: bytes) -> None:
    out = sys.stdout.buffer
    out.write(line)
    out.flush()


class _Guarded:
    """A sink whose failures are counted and logged, never raised; ``close()`` frees it."""

    def __init__(self, sink: Callable[[bytes], None], close: Callable[[], None] | None = None):
        self._sink, self._close = sink, close

    def __call__(self, line: bytes) -> None:
        try:
            self._sink(line)
        except (OSError, ValueError) as exc:
            metrics.DEFAULT.audit_failures.inc(("mirror",))
            _log.error("audit mirror failed: %s", type(exc).__name__)

    def close(self) -> None:
        if self._close is not None:
            self._close()
