"""How many client connections one server process holds, and which it gives up first.

Two caps, checked when a connection is accepted (before anything is read from it):
``max_total`` connections in all and ``max_per_client`` from one client address.  A new
connection over a cap first *sheds* an idle one — a keep-alive connection waiting for its next
request, or one still sending the head of its first (oldest first; from the same client when
the per-client cap is the one reached) — and is refused only when every connection in the way
is busy answering a request.  So sockets an attacker opens and leaves idle never stop another
client (or a fresh one of their own address) from being answered.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ConnectionLimits", "Sheddable"]


class Sheddable(Protocol):
    """What the limits need of a connection: its client address and a way to close it."""

    remote: str | None

    def shed(self) -> None: ...


class ConnectionLimits:
    """Counts connections (in all and per client address) and tracks the idle ones.

    A cap of ``0`` is no cap.  ``admit`` a connection when it is accepted, mark it ``busy``
    while a request is being answered and ``idle`` after, ``release`` it when it closes.
    """

    def __init__(self, max_total: int = 0, max_per_client: int = 0) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._count = 0
        self._per_client: dict[str | None, int] = {}
        # idle connections in the order they became idle (dicts keep insertion order)
        self._idle: dict[Sheddable, None] = {}
        self._members: set[Sheddable] = set()

    @property
    def count(self) -> int:
        return self._count

    def admit(self, conn: Sheddable) -> str | None:
        """Count ``conn`` in (as idle) and return ``None``; or the reason it is refused, when
        a cap is reached and no idle connection can make room."""
        remote = conn.remote
        per_client = self._per_client.get(remote, 0)
        if self.max_per_client and per_client >= self.max_per_client and not self._shed(remote):
            return "too many connections from this client"
        if self.max_total and self._count >= self.max_total and not self._shed(None, True):
            return "too many connections"
        self._members.add(conn)
        self._count += 1
        self._per_client[remote] = self._per_client.get(remote, 0) + 1
        self._idle[conn] = None
        return None

    def busy(self, conn: Sheddable) -> None:
        self._idle.pop(conn, None)

    def idle(self, conn: Sheddable) -> None:
        if conn in self._members:
            self._idle[conn] = None

    def release(self, conn: Sheddable) -> None:
        """``conn`` is closed (counted once, however often it is called)."""
        if conn not in self._members:
            return
        self._members.discard(conn)
        self._idle.pop(conn, None)
        self._count -= 1
        left = self._per_client.get(conn.remote, 0) - 1
        if left > 0:
            self._per_client[conn.remote] = left
        else:
            self._per_client.pop(conn.remote, None)

    def _shed(self, remote: str | None, any_client: bool = False) -> bool:
        """Close the oldest idle connection (of ``remote``, or of any client); False if none."""
        for conn in self._idle:
            if any_client or conn.remote == remote:
                self.release(conn)
                conn.shed()
                return True
        return False
