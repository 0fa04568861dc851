"""The resolver the proxy's upstream connections use: names are resolved, and any answer that
is not a public address (loopback, private, link-local, cloud metadata, multicast, reserved,
shared, unspecified) is refused — unless an operator named that host explicitly in an
endpoint's ``Upstream``.

Checking the name alone is not enough: a name under an allowed domain can resolve to
``169.254.169.254``, and DNS answers can change between a check and the connection
(rebinding).  The check therefore happens where the connection is made, on the addresses the
connection really uses.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["DestinationRefused", "GuardedResolver", "is_public_address"]

# Metadata services that sit at otherwise "public-looking" or special addresses.
_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),
    }
)


class DestinationRefused(OSError):
    """A host resolved only to addresses the proxy must never send a credential to."""


def is_public_address(text: str) -> bool:
    """True for a globally routable unicast address that is no metadata service."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr in _METADATA or addr.is_multicast:
        return False
    return addr.is_global


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` (the system resolver by default) and drops non-public answers,
    except for hosts in ``trusted`` (lower-case names of explicitly configured upstreams)."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()
        self.trusted: frozenset[str] = frozenset()

    def trust(self, hosts: set[str] | frozenset[str]) -> None:
        """Replace the set of explicitly configured upstream hosts (on start and reload)."""
        self.trusted = frozenset(h.lower().strip("[]") for h in hosts)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        if host.lower().strip("[]") in self.trusted:
            return answers
        public = [a for a in answers if is_public_address(a["host"])]
        if not public:
            raise DestinationRefused(f"{host} does not resolve to a public address")
        return public

    async def close(self) -> None:
        await self._inner.close()
