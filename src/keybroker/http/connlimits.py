"""How many client connections one server process holds, and which it gives up first.

Two caps, checked when a connection is accepted (before anything is read from it):
``max_total`` connections in all and ``max_per_client`` from one client address.  A new
connection over a cap first *sheds* an idle one — a keep-alive connection waiting for its next
request, or one still sending the head of its first (oldest first; from the same client when
the per-client cap is the one reached) — and is refused only when every connection in the way
is busy answering a request.  So sockets an attacker opens and leaves idle never stop another
client (or a fresh one of their own address) from being answered.

A "client" is an IPv4 address (also when it arrives IPv4-mapped on a dual-stack socket) or an
IPv6 /64: one host is routinely given a whole /64, and counting its addresses one by one
would make the per-client cap no cap at all.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Protocol

__all__ = ["ConnectionLimits", "Sheddable", "client_key"]


@functools.lru_cache(maxsize=4096)
def client_key(remote: str | None) -> str | None:
    """The key connections are counted under per client: the IPv4 address, or the IPv6 /64
    (anything that is not an IP address counts as itself)."""
    if remote is None:
        return None
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


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
        remote = client_key(conn.remote)
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
        remote = client_key(conn.remote)
        left = self._per_client.get(remote, 0) - 1
        if left > 0:
            self._per_client[remote] = left
        else:
            self._per_client.pop(remote, None)

    def _shed(self, remote: str | None, any_client: bool = False) -> bool:
        """Close the oldest idle connection (of ``remote``, or of any client); False if none."""
        for conn in self._idle:
            if any_client or client_key(conn.remote) == remote:
                self.release(conn)
                conn.shed()
                return True
        return False
