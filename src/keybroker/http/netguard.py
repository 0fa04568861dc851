"""The resolver the proxy's upstream connections use: names are resolved, and any answer that
is not a public address is refused — unless an operator named that host explicitly in an
endpoint's ``Upstream``.

Public means global unicast, judged by ``is_global`` *and* an explicit list, since Python's
answer differs between versions: IPv6 only inside ``2000::/3``; IPv4-mapped and NAT64
(``64:ff9b::/96``) addresses judged by the IPv4 address they carry; 6to4, Teredo,
IPv4-compatible and local-use NAT64 refused whole; ``192.0.0.0/24``, shared, reserved and
documentation ranges refused; the cloud metadata and platform addresses of AWS, GCP, Azure,
Alibaba, Tencent, Volcengine and Oracle refused by address.

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

# Cloud metadata and platform services, at addresses ``is_global`` may call public.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, Oracle, Huawei, OpenStack, ...
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity
        "169.254.169.253",  # AWS DNS
        "169.254.169.123",  # AWS time sync
        "169.254.0.23",  # Tencent Cloud metadata
        "100.100.100.200",  # Alibaba Cloud metadata
        "100.96.0.96",  # Volcengine metadata
        "168.63.129.16",  # Azure WireServer / host DNS
        "192.0.0.192",  # Oracle Cloud metadata
        "fd00:ec2::254",  # AWS IMDS (IPv6)
        "fd00:ec2::23",  # AWS EKS Pod Identity (IPv6)
        "fd20:ce::254",  # GCP metadata (IPv6)
    )
)

# Ranges refused whatever ``is_global`` says (Python's answer differs between versions).
_REFUSED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier NAT)
        "192.0.0.0/24",  # IETF protocol assignments (192.0.0.9/10 "global" in some Pythons)
        "198.18.0.0/15",
        "240.0.0.0/4",
        "2001::/32",  # Teredo: the client address is obfuscated, refused whole
        "2001:db8::/32",
        "2002::/16",  # 6to4 (deprecated; relays reach any IPv4 address)
        "3fff::/20",  # documentation
    )
)
# Global unicast IPv6 is 2000::/3; everything else (::/8 with IPv4-compatible ::a.b.c.d,
# IPv4-translated and local-use NAT64 64:ff9b:1::/48, 100::/64 discard, 5f00::/16 SRv6,
# fc00::/7, fe80::/10, multicast) is refused once mapped and NAT64 addresses are unwrapped.
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: check the IPv4 inside


class DestinationRefused(OSError):
    """A host resolved only to addresses the proxy must never send a credential to."""


def is_public_address(text: str) -> bool:
    """True for a globally routable unicast address that is no metadata service.

    An IPv6 address that carries an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64
    ``64:ff9b::a.b.c.d``) is judged by that IPv4 address; the other embeddings (6to4, Teredo,
    IPv4-compatible, local-use NAT64) are refused whole."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return _is_public(addr)


def _is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return _is_public(addr.ipv4_mapped)
        if addr in _NAT64:
            return _is_public(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if addr not in _GLOBAL_UNICAST_V6:
            return False
    if addr in _METADATA or addr.is_multicast or not addr.is_global:
        return False
    return not any(addr in net for net in _REFUSED_NETWORKS if net.version == addr.version)


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
