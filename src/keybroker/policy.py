"""Per-account policies: which services, actions, regions and client addresses a proxy
credential may use, checked after the signature verified and before anything is re-signed.

Actions are named ``service:Action`` (``ec2:DescribeInstances``, ``s3:GetObject``) and matched
case-insensitively against glob patterns (``ec2:Describe*``, ``iam:*``).  The action comes from
the signature scheme (``Action=``, ``X-Amz-Target``, ``X-TC-Action``, ...), from a form body
(query-protocol APIs sent as POST), or — for REST APIs without one, such as S3 — from the
method and path.  A request whose action cannot be known is allowed only by a policy that does
not restrict actions (and, for ``read-only``, only with GET/HEAD).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from keybroker.config import Policy
from keybroker.errors import Forbidden

__all__ = [
    "READ_ONLY_PREFIXES",
    "RequestFacts",
    "check",
    "check_source",
    "form_action",
    "ip_allowed",
    "reads_only",
    "rest_action",
    "s3_action",
]

#: Action name prefixes that only read, across the vendors' API naming conventions.
READ_ONLY_PREFIXES = (
    "describe",
    "get",
    "list",
    "head",
    "query",
    "search",
    "lookup",
    "check",
    "check_source",
    "batchget",
    "scan",
    "select",
    "view",
)
_READ_METHODS = frozenset({"GET", "HEAD"})


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
    if policy.deny_actions and name and _matches(name, tuple(policy.deny_actions)):
        raise Forbidden(f"the policy denies action '{name}'")
    if policy.actions and not (name and _matches(name, tuple(policy.actions))):
        raise Forbidden(f"the policy does not allow action '{name or service + ':?'}'")
    if policy.preset == "read-only" and not facts.read_only:
        raise Forbidden(f"the read-only policy does not allow '{name or facts.method}'")


def check_source(policy: Policy, source_ip: str | None) -> None:
    """Raise ``Forbidden`` unless ``policy`` allows the client address ``source_ip``."""
    if policy.source_cidrs and not _ip_in(source_ip, tuple(policy.source_cidrs)):
        raise Forbidden("the policy does not allow this client address for the account")


def reads_only(action: str | None, method: str) -> bool:
    """The generic read-only rule, for signers without their own ``operation``: an action
    named like a read, or no action and a safe method."""
    if action:
        return action.lower().startswith(READ_ONLY_PREFIXES)
    return method.upper() in _READ_METHODS


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


def form_action(content_type: str | None, body: bytes | None) -> str | None:
    """``Action=`` of a form-encoded body (query-protocol APIs sent as POST)."""
    if not body or "x-www-form-urlencoded" not in (content_type or "").lower():
        return None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    for key, value in parse_qsl(text, keep_blank_values=True):
        if key == "Action":
            return value or None
    return None


_S3_BUCKET_SUBRESOURCES = {
    "acl": ("GetBucketAcl", "PutBucketAcl"),
    "policy": ("GetBucketPolicy", "PutBucketPolicy"),
    "tagging": ("GetBucketTagging", "PutBucketTagging"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning"),
    "location": ("GetBucketLocation", "PutBucketLocation"),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration"),
    "cors": ("GetBucketCORS", "PutBucketCORS"),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration"),
}


def s3_action(method: str, path: str, query: str, host: str) -> str:
    """The IAM action of an S3 REST request (the permission it needs), from method and path.

    Path-style (``/bucket/key``) and virtual-hosted (``bucket.s3...``) addressing both work.
    """
    names = {k for k, _ in parse_qsl(query, keep_blank_values=True)}
    parts = path.lstrip("/").split("/", 1)
    virtual = ".s3" in host.split(":", 1)[0] and not host.startswith("s3")
    bucket = parts[0] if not virtual else host.split(".s3", 1)[0]
    key = (parts[1] if len(parts) > 1 else "") if not virtual else path.lstrip("/")
    method = method.upper()
    if not bucket:
        return "ListAllMyBuckets"
    if key:
        return _s3_object_action(method, names)
    for name, (read, write) in _S3_BUCKET_SUBRESOURCES.items():
        if name in names:
            return read if method in _READ_METHODS else write
    if "uploads" in names:
        return "ListBucketMultipartUploads"
    if "delete" in names and method == "POST":
        return "DeleteObject"
    return {"PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, "ListBucket")


def _s3_object_action(method: str, names: set[str]) -> str:
    if "tagging" in names:
        return "GetObjectTagging" if method in _READ_METHODS else "PutObjectTagging"
    if "acl" in names:
        return "GetObjectAcl" if method in _READ_METHODS else "PutObjectAcl"
    if method in _READ_METHODS:
        return "ListMultipartUploadParts" if "uploadId" in names else "GetObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in names else "DeleteObject"
    return "PutObject"  # PUT, POST ?uploads, POST ?uploadId (complete), PUT part, copy


def rest_action(
    vendor: str, service: str | None, method: str, path: str, query: str, host: str
) -> str | None:
    """The action of a REST API request that names none (S3 and S3-compatible services)."""
    if service == "s3" and vendor in ("aws", "ksyun"):
        return s3_action(method, path, query, host)
    return None
