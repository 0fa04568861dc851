"""Per-account policies: which services, actions, regions and client addresses a proxy
credential may use, checked after the signature verified and before anything is re-signed.

Actions are named ``service:Action`` (``ec2:DescribeInstances``, ``s3:GetObject``) and matched
case-insensitively against glob patterns (``ec2:Describe*``, ``iam:*``).  The action and whether
it only reads come from the signer (``Signer.operation``: what the vendor will execute, read
where the vendor reads it — AWS by each service's protocol, S3 by method, path and
sub-resources); this module knows no vendor.  A request the signer cannot classify is denied by
any policy with action rules (``Actions``/``DenyActions``) and by ``read-only``;
``read-only`` also never lets through a method other than GET, HEAD or POST (and POST only for
an RPC read action the signer vouches for).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from keybroker.errors import Forbidden
from keybroker.settings import Policy

__all__ = [
    "RequestFacts",
    "check",
    "check_source",
    "ip_allowed",
]

#: the methods a read-only policy may ever forward (POST: RPC APIs send reads as POST)
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "POST"})


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a policy decides on; never a secret."""

    service: str | None
    action: str | None
    region: str | None
    method: str
    source_ip: str | None
    #: the signer classified the operation as read-only (``Operation.read_only``)
    read_only: bool = False


def check(policy: Policy, facts: RequestFacts) -> None:
    """Raise ``Forbidden`` (with the rule that refused) unless ``policy`` allows ``facts``."""
    check_source(policy, facts.source_ip)
    service = (facts.service or "").lower()
    if policy.services and service not in {s.lower() for s in policy.services}:
        raise Forbidden(f"the policy does not allow service '{service or '?'}'")
    if policy.regions and (facts.region or "") not in policy.regions:
        raise Forbidden(f"the policy does not allow region '{facts.region or '?'}'")
    name = f"{service}:{facts.action}" if facts.action else None
    if name is None and (policy.actions or policy.deny_actions):
        raise Forbidden(
            f"the policy has action rules and the {service or '?'} operation of this "
            f"{facts.method} request cannot be determined"
        )
    if name and policy.deny_actions and _matches(name, tuple(policy.deny_actions)):
        raise Forbidden(f"the policy denies action '{name}'")
    if name and policy.actions and not _matches(name, tuple(policy.actions)):
        raise Forbidden(f"the policy does not allow action '{name}'")
    if policy.preset == "read-only":
        _check_read_only(facts, name)


def _check_read_only(facts: RequestFacts, name: str | None) -> None:
    method = facts.method.upper()
    if method not in _READ_ONLY_METHODS:
        raise Forbidden(f"the read-only policy does not allow method {method}")
    if not facts.read_only:
        what = f"'{name}' ({method})" if name else f"this unclassified {method} request"
        raise Forbidden(f"the read-only policy does not allow {what}")


def check_source(policy: Policy, source_ip: str | None) -> None:
    """Raise ``Forbidden`` unless ``policy`` allows the client address ``source_ip``."""
    if policy.source_cidrs and not _ip_in(source_ip, tuple(policy.source_cidrs)):
        raise Forbidden("the policy does not allow this client address for the account")


@lru_cache(maxsize=4096)
def _pattern(glob: str) -> str:
    return glob.lower()


def _matches(name: str, globs: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, _pattern(g)) for g in globs)


@lru_cache(maxsize=1024)
def _networks(
    cidrs: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _ip_in(ip: str | None, cidrs: tuple[str, ...]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in _networks(cidrs))


def ip_allowed(ip: str | None, cidrs: Sequence[str]) -> bool:
    """True if ``cidrs`` is empty or ``ip`` is in one of them."""
    return not cidrs or _ip_in(ip, tuple(cidrs))
