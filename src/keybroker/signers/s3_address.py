"""The one reading of an S3 address: which bucket and key a request names.

Routing (:mod:`keybroker.signers.aws`, the upstream of a natively addressed request) and the
operation classifier (:mod:`keybroker.signers._aws_operation`) both read the address here, so
they always agree on the bucket and key.

A host is *virtual-hosted* only when it is one of S3's own endpoint names under
``amazonaws.com`` / ``amazonaws.com.cn`` with labels before the S3 label; the bucket is those
labels (dots included).  The S3 label is found from the right, so a bucket named like an
endpoint (``s3logs``, ``a.s3.b``) is still the bucket::

    bucket.s3.amazonaws.com                      bucket.s3.eu-west-1.amazonaws.com
    bucket.s3.dualstack.eu-west-1.amazonaws.com  bucket.s3-fips.us-east-1.amazonaws.com
    bucket.s3-accelerate(.dualstack).amazonaws.com  bucket.s3-eu-west-1.amazonaws.com (legacy)
    name-123456789012.s3-accesspoint(-fips)(.dualstack).eu-west-1.amazonaws.com
    name-123456789012.s3-object-lambda.eu-west-1.amazonaws.com
    bucket--usw2-az1--x-s3.s3express(-fips)-usw2-az1.us-west-2.amazonaws.com (S3 Express)
    ap-123456789012.op-01ac5d28a6a232904.s3-outposts.us-west-2.amazonaws.com (Outposts)

Every other host (``s3.eu-west-1.amazonaws.com``, a custom endpoint, an ``Upstream``, the
proxy's own name) is *path style*: the bucket is the first path segment.  ``s3-control`` hosts
(``123456789012.s3-control...``) name an account, never a bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["S3Address", "parse_s3_address", "s3_host_parts"]

_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}"
_HOST = re.compile(
    r"(?:(?P<bucket>[a-z0-9][a-z0-9.-]*)\.)?"  # greedy: the S3 label is the rightmost one
    r"(?P<label>s3(?:-fips|-accelerate|-accesspoint(?:-fips)?|-object-lambda(?:-fips)?"
    rf"|-control(?:-fips)?|-outposts(?:-fips)?|-external-1|-{_REGION}|express-(?!control\b)[a-z0-9]+(?:-[a-z0-9]+)*)?)"
    rf"(?P<rest>(?:\.dualstack)?(?:\.{_REGION})?)"
    r"\.amazonaws\.com(?:\.cn)?"
)


@dataclass(frozen=True, slots=True)
class S3Address:
    """``bucket`` (``None``: the request names no bucket) and ``key`` (raw, percent-encoded
    as sent; ``""`` for a bucket-level request); ``virtual``: the bucket came from the host;
    ``label``: the S3 label of an S3 endpoint host (``s3``, ``s3-accesspoint``, ...), ``None``
    for any other host."""

    bucket: str | None
    key: str
    virtual: bool
    label: str | None

    def path(self) -> str:
        """The path-style path of this address: ``/bucket/key``, ``/bucket`` or ``/``."""
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    def resource(self) -> str | None:
        """``bucket/key``, ``bucket``, or ``None`` when no bucket is named."""
        if self.bucket is None:
            return None
        return f"{self.bucket}/{self.key}" if self.key else self.bucket


def s3_host_parts(host: str) -> tuple[str | None, str, str] | None:
    """``(bucket, S3 label, rest)`` of an S3 endpoint host (``None`` for any other host);
    ``rest`` is what follows the label before the domain (``.dualstack.eu-west-1``)."""
    name = _hostname(host)
    match = _HOST.fullmatch(name)
    if match is None:
        return None
    bucket = match["bucket"]
    if match["label"].startswith("s3-control"):
        bucket = None  # the account id of S3 Control, not a bucket
    return bucket, match["label"], match["rest"]


def parse_s3_address(host: str, path: str) -> S3Address:
    """The bucket and key a request for ``host`` and raw ``path`` names."""
    parts = s3_host_parts(host)
    label = parts[1] if parts else None
    if parts is not None and parts[0] is not None:
        return S3Address(parts[0], path[1:] if path.startswith("/") else path, True, label)
    if label is not None and label.startswith("s3-control"):
        return S3Address(None, "", False, label)
    bucket, _, key = path[1:].partition("/") if path.startswith("/") else ("", "", "")
    return S3Address(bucket or None, key, False, label)


def _hostname(host: str) -> str:
    name = host.strip().lower()
    if name.startswith("["):
        return name
    return name.rsplit(":", 1)[0].rstrip(".") if ":" in name else name.rstrip(".")
