"""A harmless signed request per vendor: what ``keybroker try`` sends through the proxy.

Each sample is a read-only "who am I" style call laid out as the vendor's SDK sends it, with a
placeholder signature in the scheme's own format.  :func:`signed_sample` lets the scheme's
parser read it and its re-signer sign it with the given credential, so a sample is signed
exactly the way the proxy itself verifies — whatever host it is addressed to (the proxy's own
address in native mode, the vendor's host in key-proxy mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.signers.base import SigningRequest

__all__ = ["Sample", "known_samples", "sample_for", "signed_sample"]

_ZERO_SIGNATURE = "0" * 64


@dataclass(frozen=True, slots=True)
class Sample:
    """A request as the vendor's SDK would send it, before its signature is made."""

    description: str
    method: str
    #: the vendor's public host the request is meant for
    host: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


def _aws(access_key: str, now: datetime) -> Sample:
    date, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{access_key}/{date}/us-east-1/sts/aws4_request"
    return Sample(
        "AWS STS GetCallerIdentity (which identity the real key belongs to)",
        "POST",  # as boto3 sends it: a form body
        "sts.us-east-1.amazonaws.com",
        "/",
        "",
        (
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("X-Amz-Date", stamp),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={scope}, "
                "SignedHeaders=content-type;host;x-amz-date, "
                f"Signature={_ZERO_SIGNATURE}",
            ),
        ),
        b"Action=GetCallerIdentity&Version=2011-06-15",
    )


def _volcengine(access_key: str, now: datetime) -> Sample:
    date, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{access_key}/{date}/cn-beijing/iam/request"
    return Sample(
        "Volcengine IAM ListUsers (read-only)",
        "GET",
        "open.volcengineapi.com",
        "/",
        "Action=ListUsers&Version=2018-01-01&Limit=1",
        (
            ("X-Date", stamp),
            (
                "Authorization",
                f"HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-date, "
                f"Signature={_ZERO_SIGNATURE}",
            ),
        ),
    )


_SAMPLES: dict[str, Callable[[str, datetime], Sample]] = {
    "aws": _aws,
    "volcengine": _volcengine,
}


def known_samples() -> list[str]:
    """The vendor codes that have a sample request."""
    return sorted(_SAMPLES)


def sample_for(vendor: str, access_key: str, now: datetime) -> Sample:
    """The unsigned sample of ``vendor``; ``KeyError`` (naming the vendors that have one)."""
    try:
        make = _SAMPLES[vendor]
    except KeyError:
        raise KeyError(
            f"no sample request for vendor {vendor!r} yet (have: {', '.join(known_samples())})"
        ) from None
    return make(access_key, now)


def signed_sample(
    vendor: str, cred: Credential, now: datetime, *, host: str | None = None, scheme: str = "https"
) -> tuple[Sample, SigningRequest]:
    """The sample of ``vendor`` signed with ``cred`` at ``now`` for ``host`` (default: the
    vendor's own host).  ``KeyError`` for a vendor without a sample."""
    signer = signers.get(vendor)
    sample = sample_for(vendor, signers.credential_id(signer, cred), now)
    req = SigningRequest(
        sample.method,
        host or sample.host,
        sample.path,
        sample.query,
        CIMultiDict(sample.headers),
        scheme,
    )
    auth = signer.parse(req)
    signer.resign(req, auth, cred, sample.body, now)
    return sample, req
