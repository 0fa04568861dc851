"""AWS Signature Version 4 (vendor code ``aws``).

Header auth (``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
Signature=...`` with ``X-Amz-Date``) and presigned URLs (``X-Amz-Algorithm``, ...,
``X-Amz-Signature``) are both verified and re-signed; see :mod:`keybroker.signers.sigv4.scheme` for
the algorithm.  S3 and its relatives keep the path as sent; other services sign it normalised
and encoded once more, as botocore does.  S3 uploads in ``aws-chunked`` encoding are verified and
re-signed chunk by chunk while they stream (:mod:`keybroker.signers.sigv4.chunked`).

``native_upstream`` maps the signing service and region back to the public endpoint, using the
same host names as botocore's endpoint rules for the services that differ from
``{service}.{region}.amazonaws.com``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar

from keybroker.credentials import Credential
from keybroker.errors import MalformedSignature
from keybroker.signers import _s3_sigv2 as sigv2
from keybroker.signers._aws_models import botocore_version
from keybroker.signers._aws_operation import aws_operation
from keybroker.signers.base import Operation, ParsedAuth, Resigned, SigningRequest
from keybroker.signers.common import compact_time
from keybroker.signers.s3_address import parse_s3_address
from keybroker.signers.sigv4.scheme import SigV4Scheme

__all__ = ["SIGNER", "AwsSigner"]

#: signing names whose endpoint prefix is another word (botocore's endpoint data)
_PREFIX = {
    "ses": "email",
    "mobiletargeting": "pinpoint",
    "awsssoportal": "portal.sso",
    "sso-oauth": "oidc",
    "ecr": "api.ecr",
    "iotdata": "data-ats.iot",
}

#: partition-global services: host in the commercial partition, host in the China partition
#: (``None``: the regional default applies there)
_GLOBAL: dict[str, tuple[str, str | None]] = {
    "iam": ("iam.amazonaws.com", "iam.cn-north-1.amazonaws.com.cn"),
    "route53": ("route53.amazonaws.com", "route53.amazonaws.com.cn"),
    "cloudfront": ("cloudfront.amazonaws.com", "cloudfront.cn-northwest-1.amazonaws.com.cn"),
    "budgets": ("budgets.amazonaws.com", "budgets.amazonaws.com.cn"),
    "waf": ("waf.amazonaws.com", None),
    "organizations": (
        "organizations.us-east-1.amazonaws.com",
        "organizations.cn-northwest-1.amazonaws.com.cn",
    ),
    "ce": ("ce.us-east-1.amazonaws.com", "ce.cn-northwest-1.amazonaws.com.cn"),
    "shield": ("shield.us-east-1.amazonaws.com", None),
    "health": ("global.health.amazonaws.com", "global.health.amazonaws.com.cn"),
}

#: GovCloud hosts of the global services that have one there
_GOV = {"iam": "iam.us-gov.amazonaws.com", "route53": "route53.us-gov.amazonaws.com"}

_S3_SERVICES = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_S3_CONTROL_PATH = "/v20180820/"
_LEGACY_S3 = re.compile(r"s3-(external-1|[a-z]{2}(-[a-z]+)+-\d{1,2})")


class AwsSigner(SigV4Scheme):
    """AWS SigV4; stateless and thread-safe (the signing-key cache is locked)."""

    vendor: ClassVar[str] = "aws"
    access_key_prefix: ClassVar[str] = "AKIA"
    public_domains: ClassVar[tuple[str, ...]] = (".amazonaws.com", ".amazonaws.com.cn")
    #: customer-controlled hosts under the AWS domains: load balancers, EC2 instance names,
    #: API Gateway / AppSync APIs, S3 website endpoints, VPC endpoints, database, search,
    #: broker, Kubernetes and SFTP endpoints of customers' own resources
    excluded_hosts: ClassVar[tuple[str, ...]] = tuple(
        p + suffix
        for suffix in (".amazonaws.com", ".amazonaws.com.cn")
        for p in (
            "*.elb",
            "*.compute",
            "*.compute-1",
            "*.execute-api.*",
            "*.appsync-api.*",
            "*.s3-website-*",
            "*.s3-website.*",
            "s3-website-*",
            "s3-website.*",
            "*.vpce",
            "*.es",
            "*.aoss",
            "*.rds",
            "*.cache",
            "*.redshift",
            "*.redshift-serverless",
            "*.neptune",
            "*.docdb",
            "*.dax-clusters.*",
            "*.mq.*",
            "*.kafka.*",
            "*.kafka-serverless.*",
            "*.eks",
            "*.server.transfer.*",
        )
    )
    raw_path_services: ClassVar[frozenset[str]] = _S3_SERVICES

    # S3 Signature Version 2 beside SigV4 (see keybroker.signers._s3_sigv2) ------------------

    def detect(self, req: SigningRequest) -> bool:
        """SigV4 (header or presigned), S3 SigV2 (header or presigned), and the legacy AWS
        schemes that parse refuses by name."""
        return super().detect(req) or sigv2.is_sigv2(req) or sigv2.refuse_other_legacy(req)

    def parse(self, req: SigningRequest) -> ParsedAuth:
        if super().detect(req):
            return super().parse(req)
        if sigv2.is_sigv2(req):
            return sigv2.parse_sigv2(req)
        why = sigv2.refusal(req)
        if why is not None:
            raise MalformedSignature(why)
        return super().parse(req)

    def verify(
        self, req: SigningRequest, auth: ParsedAuth, cred: Credential, body: bytes | None
    ) -> None:
        if isinstance(auth.state, sigv2.SigV2State):
            sigv2.verify_sigv2(req, auth, cred)
        else:
            super().verify(req, auth, cred, body)

    def resign(
        self,
        req: SigningRequest,
        auth: ParsedAuth,
        cred: Credential,
        body: bytes | None,
        now: datetime,
    ) -> Resigned | None:
        """SigV4 as the client sent it; a SigV2 request is re-signed as SigV4 (header or
        presigned, as it came)."""
        if isinstance(auth.state, sigv2.SigV2State):
            if now.tzinfo is None:
                raise ValueError("now must be a timezone-aware datetime")
            auth = sigv2.to_sigv4(req, auth, compact_time(now), now)
        return super().resign(req, auth, cred, body, now)

    def native_upstream(self, req: SigningRequest, auth: ParsedAuth) -> str | None:
        """``https://host`` of the public endpoint for the signed service and region."""
        service, region = auth.service, auth.region
        if not service or not region or not _REGION.fullmatch(region):
            return None
        if service == "s3":
            return "https://" + _s3_host(req, region)
        return "https://" + _host(service, region)

    def prepare(self) -> None:
        # the botocore model file: ~0.2 s to decompress and parse on a quiet machine, paid at
        # start rather than by the first request of every worker
        botocore_version()

    def operation(self, req: SigningRequest, auth: ParsedAuth, body: bytes | None) -> Operation:
        """What the service executes, read by its protocol (:mod:`._aws_operation`).
        Raises ``MalformedRequest`` when the request names two operations."""
        return aws_operation(req, auth.service, body)


def _suffix(region: str) -> str:
    return ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"


def _host(service: str, region: str) -> str:
    if service in _GLOBAL:
        commercial, china = _GLOBAL[service]
        if region.startswith("cn-"):
            if china is not None:
                return china
        elif region.startswith("us-gov-"):
            if service in _GOV:
                return _GOV[service]
        else:
            return commercial
    prefix = _PREFIX.get(service, service)
    if service == "iotdata" and region.startswith("cn-"):
        prefix = "data.ats.iot"
    return f"{prefix}.{region}{_suffix(region)}"


def _s3_host(req: SigningRequest, region: str) -> str:
    """S3's endpoint; a virtual-hosted bucket in the inbound Host is kept (read by
    :func:`~keybroker.signers.s3_address.parse_s3_address`, as the classifier reads it)."""
    address = parse_s3_address(req.host, req.path)
    if not address.virtual and req.path.startswith(_S3_CONTROL_PATH):
        return f"s3-control.{region}{_suffix(region)}"
    base = "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}{_suffix(region)}"
    if not address.virtual or address.bucket is None:
        return base
    if address.label == "s3" or _LEGACY_S3.fullmatch(address.label or ""):
        return f"{address.bucket}.{base}"
    # an access point, Object Lambda, accelerate or FIPS name: that very endpoint
    return (
        req.host.lower().rsplit(":", 1)[0].rstrip(".")
        if ":" in req.host
        else req.host.lower().rstrip(".")
    )


SIGNER = AwsSigner()
