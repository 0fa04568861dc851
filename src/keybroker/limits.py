"""Per-account concurrency limits: at most ``MaxConcurrentRequests`` in flight per account.

Above the limit a request is refused at once with 503 ``Proxy.TooManyRequests`` and a
``Retry-After`` — queueing would only move the overload into the proxy's memory.  The count is
per worker process; with N workers an account can have up to N x the limit in flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from keybroker.config import Endpoint
from keybroker.errors import TooManyRequests

__all__ = ["AccountLimits"]


class AccountLimits:
    """In-flight counters by account name (event-loop confined: no lock needed)."""

    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}

    def inflight(self, account: str) -> int:
        return self._inflight.get(account, 0)

    @contextmanager
    def slot(self, endpoint: Endpoint) -> Iterator[None]:
        """Hold one of ``endpoint``'s slots for the block; raises ``TooManyRequests`` if full."""
        limit = endpoint.max_concurrent_requests
        name = endpoint.cloud_account_name
        current = self._inflight.get(name, 0)
        if limit is not None and current >= limit:
            raise TooManyRequests(
                f"account {name!r} has {limit} requests in flight already", retry_after=1
            )
        self._inflight[name] = current + 1
        try:
            yield
        finally:
            left = self._inflight[name] - 1
            if left:
                self._inflight[name] = left
            else:
                del self._inflight[name]
