"""Requests the HTTP layer refuses itself (unparsable, CL+TE, headers too large or too slow),
folded for the audit log.

Such a request never reaches the proxy's handler, yet it arrived and the audit log says so:
:meth:`RefusalFolder.add` counts it under ``(source, reason)`` and :meth:`flush`
(called about once a second) writes one ``"event":"refused"`` record per key with its
``count`` and the times of the first and last.  At most ``max_keys`` keys are held per
window; refusals beyond them are counted under the source ``"other"``, so a flood of refusals
costs a bounded number of records however many sources or requests it has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from keybroker.audit.trail import AuditLog
from keybroker.metrics import instruments as metrics

__all__ = ["DEFAULT_MAX_KEYS", "RefusalFolder"]

DEFAULT_MAX_KEYS = 256
_OTHER = "other"
_log = logging.getLogger("keybroker.audit")

Key = tuple[str, str]


@dataclass
class _Count:
    count: int
    first: float
    last: float


class RefusalFolder:
    """Folds refusals for ``audit()`` (the current audit log, or ``None``)."""

    def __init__(
        self,
        audit: Callable[[], AuditLog | None],
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._audit = audit
        self._max_keys = max_keys
        self._clock = clock
        self._pending: dict[Key, _Count] = {}

    def add(self, source: str | None, reason: str) -> None:
        """Count one refusal (from the HTTP server's ``on_refuse``; never raises)."""
        now = self._clock()
        key: Key = (source or "unknown", reason[:128])
        if key not in self._pending and len(self._pending) >= self._max_keys:
            key = (_OTHER, key[1])
        held = self._pending.get(key)
        if held is None:
            self._pending[key] = _Count(1, now, now)
        else:
            held.count += 1
            held.last = now

    @property
    def pending(self) -> int:
        """How many records the next :meth:`flush` writes."""
        return len(self._pending)

    def flush(self) -> int:
        """Write one record per folded key; how many were written.  A failed write is counted
        (``keybroker_audit_failures_total``) and its key kept for the next flush."""
        log = self._audit()
        if not self._pending or log is None or not log.enabled:
            self._pending.clear()
            return 0
        pending, self._pending = self._pending, {}
        written = 0
        for key, held in pending.items():
            try:
                log.record(_event(key, held), durable=False)
            except (OSError, ValueError) as exc:
                metrics.DEFAULT.audit_failures.inc(("file",))
                _log.error("audit record of a refusal failed: %s", type(exc).__name__)
                self._keep(key, held)
                continue
            written += 1
        return written

    def _keep(self, key: Key, held: _Count) -> None:
        again = self._pending.get(key)
        if again is None:
            self._pending[key] = held
        else:
            again.count, again.first = again.count + held.count, held.first


def _event(key: Key, held: _Count) -> dict[str, object]:
    source, reason = key
    return {
        "event": "refused",
        "source_ip": source,
        "reason": reason,
        "count": held.count,
        "first": _iso(held.first),
        "last": _iso(held.last),
    }


def _iso(moment: float) -> str:
    when = datetime.fromtimestamp(moment, tz=UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"
