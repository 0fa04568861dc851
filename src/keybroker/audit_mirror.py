"""A second sink for the audit log: the same JSON lines to stdout or syslog, for a SIEM.

``Audit.Mirror: stdout`` writes each line to standard output, ``syslog`` sends it to the local
syslog (facility ``LOG_AUTHPRIV``, ident ``keybroker-audit``).  The file stays the record of
truth: a mirror that fails is counted (``keybroker_audit_failures_total{sink="mirror"}``) and
logged without the line, and never refuses a request.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from keybroker import metrics
from keybroker.errors import ConfigError

__all__ = ["MIRRORS", "open_mirror"]

MIRRORS = ("", "stdout", "syslog")
_log = logging.getLogger("keybroker.audit")


def open_mirror(name: str) -> Callable[[bytes], None] | None:
    """The mirror ``Audit.Mirror`` names (``None`` for none).  Raises ``ConfigError``."""
    word = name.strip().lower()
    if word == "":
        return None
    if word == "stdout":
        return _guarded(_to_stdout)
    if word == "syslog":
        import syslog

        syslog.openlog("keybroker-audit", syslog.LOG_PID, syslog.LOG_AUTHPRIV)

        def _to_syslog(line: bytes) -> None:
            syslog.syslog(syslog.LOG_INFO, line.rstrip(b"\n").decode("ascii"))

        return _guarded(_to_syslog)
    raise ConfigError(f"Audit.Mirror: expected 'stdout', 'syslog' or nothing, got {name[:40]!r}")


def _to_stdout(line: bytes) -> None:
    out = sys.stdout.buffer
    out.write(line)
    out.flush()


def _guarded(sink: Callable[[bytes], None]) -> Callable[[bytes], None]:
    def mirror(line: bytes) -> None:
        try:
            sink(line)
        except (OSError, ValueError) as exc:
            metrics.DEFAULT.audit_failures.inc(("mirror",))
            _log.error("audit mirror failed: %s", type(exc).__name__)

    return mirror
