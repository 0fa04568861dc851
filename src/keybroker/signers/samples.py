"""A harmless signed request per vendor: what ``keybroker try`` sends through the proxy.

Each sample is a read-only "who am I" style call laid out as the vendor's SDK sends it, with a
placeholder signature in the scheme's own format.  :func:`signed_sample` lets the scheme's
parser read it and its re-signer sign it with the given credential, so a sample is signed
exactly the way the proxy itself verifies — whatever host it is addressed to (the proxy's own
address in native mode, the vendor's host in key-proxy mode).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote

from multidict import CIMultiDict

from keybroker import signers
from keybroker.credentials import Credential
from keybroker.signers.base import SigningRequest

__all__ = ["Sample", "known_samples", "sample_for", "signed_sample"]

_ZERO_SIGNATURE = "0" * 64
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


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
        (  # as the SDK signs it: X-Content-Sha256 always, even of an empty body
            ("X-Content-Sha256", _EMPTY_SHA256),
            ("X-Date", stamp),
            (
                "Authorization",
                f"HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-content-sha256;x-date, "
                f"Signature={_ZERO_SIGNATURE}",
            ),
        ),
    )


def _ksyun(access_key: str, now: datetime) -> Sample:
    date, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{access_key}/{date}/cn-beijing-6/kec/aws4_request"
    return Sample(
        "Kingsoft Cloud KEC DescribeRegions (read-only)",
        "GET",
        "kec.api.ksyun.com",
        "/",
        "Action=DescribeRegions&Version=2016-03-04",
        (
            ("X-Amz-Date", stamp),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, "
                f"Signature={_ZERO_SIGNATURE}",
            ),
        ),
    )


def _aliyun(access_key: str, now: datetime) -> Sample:
    # ACS3, as today's SDKs send it; the nonce is unique per request (Alibaba Cloud refuses a
    # nonce it has seen, and re-signing keeps it)
    return Sample(
        "Alibaba Cloud ECS DescribeRegions (read-only)",
        "GET",
        "ecs.aliyuncs.com",
        "/",
        "",
        (
            ("x-acs-action", "DescribeRegions"),
            ("x-acs-version", "2014-05-26"),
            ("x-acs-date", now.strftime("%Y-%m-%dT%H:%M:%SZ")),
            ("x-acs-signature-nonce", uuid.uuid4().hex),
            ("x-acs-content-sha256", _EMPTY_SHA256),
            (
                "Authorization",
                f"ACS3-HMAC-SHA256 Credential={access_key},SignedHeaders=host;x-acs-action;"
                "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
                f"Signature={_ZERO_SIGNATURE}",
            ),
        ),
    )


def _tencent(access_key: str, now: datetime) -> Sample:
    date = now.astimezone(UTC).strftime("%Y-%m-%d")
    return Sample(
        "Tencent Cloud CVM DescribeRegions (read-only)",
        "POST",  # as the SDK sends it: TC3 over a JSON body
        "cvm.tencentcloudapi.com",
        "/",
        "",
        (
            ("Content-Type", "application/json"),
            ("X-TC-Action", "DescribeRegions"),
            ("X-TC-Version", "2017-03-12"),
            ("X-TC-Region", "ap-guangzhou"),
            ("X-TC-Timestamp", str(int(now.timestamp()))),
            (
                "Authorization",
                f"TC3-HMAC-SHA256 Credential={access_key}/{date}/cvm/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={_ZERO_SIGNATURE}",
            ),
        ),
        b"{}",
    )


def _huawei(access_key: str, now: datetime) -> Sample:
    return Sample(
        "Huawei Cloud IAM KeystoneListProjects (read-only)",
        "GET",
        "iam.myhuaweicloud.com",
        "/v3/projects",
        "",
        (
            ("Content-Type", "application/json"),
            ("X-Sdk-Date", now.strftime("%Y%m%dT%H%M%SZ")),
            (
                "Authorization",
                f"SDK-HMAC-SHA256 Access={access_key}, "
                f"SignedHeaders=content-type;host;x-sdk-date, Signature={_ZERO_SIGNATURE}",
            ),
        ),
    )


def _baidu(access_key: str, now: datetime) -> Sample:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Sample(
        "Baidu AI Cloud BCC ListInstances, one entry (read-only)",
        "GET",
        "bcc.bj.baidubce.com",
        "/v2/instance",
        "maxKeys=1",
        (
            ("x-bce-date", stamp),
            (
                "Authorization",
                f"bce-auth-v1/{access_key}/{stamp}/1800/host;x-bce-date/{_ZERO_SIGNATURE}",
            ),
        ),
    )


def _jingdong(access_key: str, now: datetime) -> Sample:
    date, stamp = now.strftime("%Y%m%d"), now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{access_key}/{date}/cn-north-1/vm/jdcloud2_request"
    return Sample(
        "JD Cloud VM DescribeInstances, one page (read-only)",
        "GET",
        "vm.jdcloud-api.com",
        "/v1/regions/cn-north-1/instances",
        "pageNumber=1&pageSize=10",
        (
            ("Content-Type", "application/json"),
            ("x-jdcloud-date", stamp),
            ("x-jdcloud-nonce", str(uuid.uuid4())),
            (
                "Authorization",
                f"JDCLOUD2-HMAC-SHA256 Credential={scope}, "
                "SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce, "
                f"Signature={_ZERO_SIGNATURE}",
            ),
        ),
    )


def _akamai(client_token: str, now: datetime) -> Sample:
    # each API client has its own host; the account's Upstream (or the host of its API
    # client) is where the request goes, this one only shows the form
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H:%M:%S+0000")
    zero = base64.b64encode(bytes(32)).decode()
    return Sample(
        "Akamai Identity Management user-profile (read-only; needs the account's Upstream "
        "set to its API client's akab-....luna.akamaiapis.net host)",
        "GET",
        "akab-xxxxxxxxxxxxxxxx-xxxxxxxxxxxxxxxx.luna.akamaiapis.net",
        "/identity-management/v3/user-profile",
        "",
        (
            (
                "Authorization",
                f"EG1-HMAC-SHA256 client_token={client_token};access_token=akab-proxy;"
                f"timestamp={stamp};nonce={uuid.uuid4()};signature={zero}",
            ),
        ),
    )


def _qiniu(access_key: str, now: datetime) -> Sample:
    zero = base64.urlsafe_b64encode(bytes(20)).decode()
    return Sample(
        "Qiniu list buckets (read-only)",
        "GET",
        "uc.qbox.me",
        "/buckets",
        "",
        (("Authorization", f"QBox {access_key}:{zero}"),),
    )


def _ucloud(access_key: str, now: datetime) -> Sample:
    return Sample(
        "UCloud GetRegion (read-only)",
        "GET",
        "api.ucloud.cn",
        "/",
        f"Action=GetRegion&PublicKey={quote(access_key, safe='')}&Signature={'0' * 40}",
        (),
    )


def _wangsu(access_key: str, now: datetime) -> Sample:
    password = base64.b64encode(bytes(20)).decode()
    basic = base64.b64encode(f"{access_key}:{password}".encode()).decode()
    return Sample(
        "Wangsu CDN domain list (read-only)",
        "GET",
        "open.chinanetcenter.com",
        "/api/domain",
        "",
        (
            ("Date", format_datetime(now.astimezone(UTC), usegmt=True)),
            ("Accept", "application/json"),
            ("Authorization", f"Basic {basic}"),
        ),
    )


def _baishan(token_id: str, now: datetime) -> Sample:
    # the token is the credential; ``resign`` puts the account's own in place of this one
    return Sample(
        "Baishan Cloud CDN domain list (read-only)",
        "GET",
        "cdn.api.baishan.com",
        "/v2/domain/list",
        "token=0",
        (),
    )


_SAMPLES: dict[str, Callable[[str, datetime], Sample]] = {
    "aws": _aws,
    "volcengine": _volcengine,
    "ksyun": _ksyun,
    "aliyun": _aliyun,
    "tencent": _tencent,
    "huawei": _huawei,
    "baidu": _baidu,
    "jingdong": _jingdong,
    "akamai": _akamai,
    "qiniu": _qiniu,
    "ucloud": _ucloud,
    "wangsu": _wangsu,
    "baishan": _baishan,
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
    sample = sample_for(vendor, signer.credential_id(cred), now)
    req = SigningRequest(
        sample.method,
        host or sample.host,
        sample.path,
        sample.query,
        CIMultiDict(sample.headers),
        scheme,
    )
    in_body = signer.body_credentials
    if in_body:  # the proxy reads such a body before parsing; resign may rewrite it
        req.body = sample.body
    auth = signer.parse(req)
    signer.resign(req, auth, cred, sample.body, now)
    if in_body and req.body is not None and req.body != sample.body:
        sample = replace(sample, body=req.body)
    return sample, req
