"""The address guard: every non-global, embedded or metadata address family is refused, in
every spelling a resolver can answer with."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from keybroker.http.netguard import DestinationRefused, GuardedResolver, is_public_address

REFUSED = [
    # IPv4 special purpose
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.1.1",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",
    "198.18.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "224.0.0.1",
    "192.0.0.9",
    "192.0.0.10",
    "192.0.0.170",
    "192.0.2.1",
    # cloud metadata and platform services
    "169.254.169.254",  # AWS / GCP / Azure / Oracle / Huawei
    "169.254.170.2",  # AWS ECS
    "169.254.170.23",  # AWS EKS pod identity
    "169.254.0.23",  # Tencent
    "100.100.100.200",  # Alibaba
    "100.96.0.96",  # Volcengine
    "168.63.129.16",  # Azure WireServer
    "192.0.0.192",  # Oracle
    "fd00:ec2::254",  # AWS IPv6 IMDS
    "fd00:ec2::23",
    "fd20:ce::254",  # GCP IPv6 metadata
    # IPv6 special purpose
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "100::1",
    "2001:db8::1",
    "3fff::1",
    "5f00::1",
    # IPv4 inside IPv6
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "::ffff:168.63.129.16",
    "::127.0.0.1",  # IPv4-compatible
    "::52.94.236.248",  # IPv4-compatible, even of a public address (deprecated form)
    "::ffff:0:7f00:1",  # IPv4-translated
    "64:ff9b::7f00:1",  # NAT64 of loopback
    "64:ff9b::a9fe:a9fe",  # NAT64 of metadata
    "64:ff9b::100.100.100.200",
    "64:ff9b::ffff:7f00:1",  # not NAT64: reserved ::/8
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
    "64:ff9b:1::3401:1",
    "2002:7f00:1::",  # 6to4 of loopback
    "2002:345e:ecf8::1",  # 6to4 of a public address (deprecated relay)
    "2001::1",  # Teredo
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "not an address",
    "",
]

PUBLIC = [
    "52.94.236.248",
    "8.8.8.8",
    "1.1.1.1",
    "2600:1f18::1",
    "2001:4860:4860::8888",
    "::ffff:52.94.236.248",
    "64:ff9b::52.94.236.248",  # DNS64: the IPv4 address is judged
]


@pytest.mark.parametrize("addr", REFUSED)
def test_refused(addr: str) -> None:
    assert not is_public_address(addr)


@pytest.mark.parametrize("addr", PUBLIC)
def test_public(addr: str) -> None:
    assert is_public_address(addr)


_V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@given(_V4)
def test_mapped_and_nat64_mean_their_ipv4(v4: ipaddress.IPv4Address) -> None:
    """An IPv6 spelling of an IPv4 address is public exactly when that address is."""
    want = is_public_address(str(v4))
    assert is_public_address(f"::ffff:{v4}") is want
    assert is_public_address(str(ipaddress.IPv6Address((0x64FF9B << 96) | int(v4)))) is want


@given(_V4, st.integers(0, 2**80 - 1))
def test_other_embeddings_are_refused_whole(v4: ipaddress.IPv4Address, low: int) -> None:
    """6to4, Teredo, IPv4-compatible and local-use NAT64 reach an IPv4 address through a
    relay: refused whatever address they carry."""
    for addr in (
        (0x2002 << 112) | (int(v4) << 80) | low & (2**80 - 1),
        (0x20010000 << 96) | (low & (2**64 - 1)) << 32 | int(v4),
        int(v4),
        (0x0064FF9B0001 << 80) | (low & (2**48 - 1)) << 32 | int(v4),
    ):
        assert not is_public_address(str(ipaddress.IPv6Address(addr)))


@given(st.integers(0, 2**128 - 1))
def test_only_global_unicast_ipv6_can_be_public(n: int) -> None:
    addr = ipaddress.IPv6Address(n)
    if is_public_address(str(addr)) and addr.ipv4_mapped is None and n >> 32 != 0x64FF9B << 64:
        assert n >> 125 == 1  # 2000::/3


class _Static(AbstractResolver):
    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        fam = socket.AF_INET6 if ":" in self.answers[0] else socket.AF_INET
        return [
            ResolveResult(hostname=host, host=a, port=port, family=fam, proto=0, flags=0)
            for a in self.answers
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("addr", [a for a in REFUSED if a and " " not in a])
def test_resolver_refuses_a_name_answering_only_refused_addresses(addr: str) -> None:
    async def run() -> None:
        await GuardedResolver(_Static([addr])).resolve("sts.amazonaws.com", 443)

    with pytest.raises(DestinationRefused):
        asyncio.run(run())
