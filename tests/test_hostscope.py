"""Vendor API hosts: customer-controlled hosts under a vendor's domains are never one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker import signers
from keybroker.errors import Forbidden
from keybroker.proxy.destinations import Destination
from keybroker.proxy.hostscope import HostScope, excluded_host

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_PATTERNS = [(s.vendor, p) for s in signers.all_signers() for p in s.excluded_hosts]


def _scope(vendor: str, extra: tuple[str, ...] = ()) -> HostScope:
    s = signers.get(vendor)
    return HostScope(vendor, s.public_domains, s.excluded_hosts, extra)


def _instance(pattern: str, labels: list[str], fill: str) -> str:
    """A host the pattern names: leading ``*.`` -> the labels, other ``*`` -> ``fill``."""
    if pattern.startswith("*."):
        pattern = ".".join(labels) + pattern[1:]
    return pattern.replace("*", fill)


def test_every_vendor_declares_its_exclusions_under_its_own_domains() -> None:
    for signer in signers.all_signers():
        assert isinstance(signer.excluded_hosts, tuple)
        for pattern in signer.excluded_hosts:
            assert any(pattern.endswith(d) for d in signer.public_domains), pattern


@pytest.mark.parametrize(("vendor", "pattern"), _PATTERNS)
@settings(max_examples=30, deadline=None)  # x ~60 patterns
@given(labels=st.lists(_LABEL, min_size=1, max_size=4), fill=_LABEL, case=st.booleans())
def test_any_host_under_an_excluded_pattern_is_refused(
    vendor: str, pattern: str, labels: list[str], fill: str, case: bool
) -> None:
    host = _instance(pattern, labels, fill)
    host = host.upper() if case else host
    for spelling in (host, host + "."):
        assert excluded_host(spelling, signers.get(vendor).excluded_hosts)
        assert not _scope(vendor).allows(spelling)
        assert not _scope(vendor, ()).allows(spelling)
    with pytest.raises(Forbidden):
        _scope(vendor).require(Destination("https", host))


@pytest.mark.parametrize(
    ("vendor", "host"),
    [
        ("aws", "my-lb-1234567890.us-east-1.elb.amazonaws.com"),
        ("aws", "internal-x.cn-north-1.elb.amazonaws.com.cn"),
        ("aws", "ec2-203-0-113-25.compute-1.amazonaws.com"),
        ("aws", "ec2-203-0-113-25.us-west-2.compute.amazonaws.com"),
        ("aws", "abc123.execute-api.us-east-1.amazonaws.com"),
        ("aws", "xyz.appsync-api.eu-west-1.amazonaws.com"),
        ("aws", "bucket.s3-website-us-east-1.amazonaws.com"),
        ("aws", "bucket.s3-website.eu-central-1.amazonaws.com"),
        ("aws", "my.dotted.bucket.s3-website-us-west-2.amazonaws.com"),
        ("aws", "s3-website-us-east-1.amazonaws.com"),
        ("aws", "vpce-0a1b.sts.us-east-1.vpce.amazonaws.com"),
        ("aws", "search-dom-abc.us-east-1.es.amazonaws.com"),
        ("aws", "mydb.c9akciq32.us-east-1.rds.amazonaws.com"),
        ("aws", "b-1234.mq.us-east-1.amazonaws.com"),
        ("aws", "b-1.cluster.abc.c2.kafka.us-east-1.amazonaws.com"),
        ("aws", "ABCDEF0123.gr7.us-east-1.eks.amazonaws.com"),
        ("aws", "s-1234.server.transfer.us-east-1.amazonaws.com"),
        ("aliyun", "alb-abc.cn-hangzhou.alb.aliyuncs.com"),
        ("aliyun", "nlb-abc.cn-hangzhou.nlb.aliyuncs.com"),
        ("aliyun", "rm-abc.mysql.rds.aliyuncs.com"),
        ("aliyun", "r-abc.redis.rds.aliyuncs.com"),
        ("aliyun", "es-cn-abc.elasticsearch.aliyuncs.com"),
        ("huawei", "bucket.obs-website.cn-north-4.myhuaweicloud.com"),
        ("baidu", "abc.cfc-execute.bj.baidubce.com"),
    ],
)
def test_known_customer_hosts_are_refused(vendor: str, host: str) -> None:
    assert not _scope(vendor).allows(host)


@pytest.mark.parametrize(
    ("vendor", "host"),
    [
        ("aws", "sts.amazonaws.com"),
        ("aws", "sts.us-east-1.amazonaws.com"),
        ("aws", "ec2.us-east-1.amazonaws.com"),
        ("aws", "elasticloadbalancing.us-east-1.amazonaws.com"),
        ("aws", "apigateway.us-east-1.amazonaws.com"),
        ("aws", "rds.us-east-1.amazonaws.com"),
        ("aws", "es.us-east-1.amazonaws.com"),
        ("aws", "eks.us-east-1.amazonaws.com"),
        ("aws", "kafka.us-east-1.amazonaws.com"),
        ("aws", "mq.us-east-1.amazonaws.com"),
        ("aws", "s3.amazonaws.com"),
        ("aws", "s3.eu-west-1.amazonaws.com"),
        ("aws", "bucket.s3.us-east-1.amazonaws.com"),
        ("aws", "s3-website-foo.s3.amazonaws.com"),  # a bucket named like a website host
        ("aws", "x.elb.s3.us-east-1.amazonaws.com"),
        ("aws", "my.rds.s3.amazonaws.com"),
        ("aws", "s3.cn-north-1.amazonaws.com.cn"),
        ("aliyun", "ecs.aliyuncs.com"),
        ("aliyun", "rds.aliyuncs.com"),
        ("aliyun", "bucket.oss-cn-hangzhou.aliyuncs.com"),
        ("aliyun", "alb.cn-hangzhou.aliyuncs.com"),
        ("huawei", "bucket.obs.cn-north-4.myhuaweicloud.com"),
        ("baidu", "bcc.bj.baidubce.com"),
        ("baidu", "cfc.bj.baidubce.com"),
    ],
)
def test_vendor_api_hosts_stay_allowed(vendor: str, host: str) -> None:
    assert _scope(vendor).allows(host)


def test_allowed_hosts_name_an_excluded_host_explicitly() -> None:
    host = "abc123.execute-api.us-east-1.amazonaws.com"
    assert _scope("aws", (f".{host}", f"={host}")).allows(host)
    assert not _scope("aws", (".other.example",)).allows(host)


def test_http_and_ip_literals_are_refused() -> None:
    with pytest.raises(Forbidden):
        _scope("aws").require(Destination("http", "sts.amazonaws.com"))
    assert not _scope("aws").allows("169.254.169.254")
